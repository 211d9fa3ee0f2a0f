"""Catalog schema revisions, oldest first; each file is frozen once released."""

from __future__ import annotations
