"""Logging, metrics and tracing shared by every Servo component."""

from __future__ import annotations
