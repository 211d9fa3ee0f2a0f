"""Alembic migrations of the catalog schema (run them with `servo.catalog.migrate`)."""

from __future__ import annotations
