"""``python -m servo``: the same as the ``servo`` command (its exit code included)."""

from __future__ import annotations

from servo.cli.main import run

run()
