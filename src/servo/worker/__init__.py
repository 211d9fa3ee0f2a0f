"""Workers: the task runtime shared by every dispatcher, and the HTTP worker app."""

from __future__ import annotations
