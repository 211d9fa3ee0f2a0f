"""The ``servo`` command line (typer + rich); entry point `servo.cli.main.main`.

Heavy modules (settings, logging, rich rendering) are imported inside the commands,
so ``servo --help`` stays fast.
"""

from __future__ import annotations
