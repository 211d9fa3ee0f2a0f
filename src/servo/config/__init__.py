"""Typed settings: defaults < config file < `SERVO_*` environment."""

from __future__ import annotations

from servo.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
