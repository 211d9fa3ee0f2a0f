"""`servo serve`: the HTTP edge of the serverless mode (workers and reconciler)."""

from __future__ import annotations
