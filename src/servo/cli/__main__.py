"""``python -m servo.cli``: the same as the ``servo`` command."""

from __future__ import annotations

from servo.cli.main import run

run()
