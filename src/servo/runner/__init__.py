"""The embedded runner: one process drives compactor, controllers, pool and timers.

It sits above the engine (`servo.engine` never imports it): the engine folds,
decides and records; the runner owns the loop, the local pool dispatcher, the
worker reports and the timer wheel, and calls into the engine.
"""

from __future__ import annotations

from servo.runner.loop import EmbeddedRunner
from servo.runner.options import Progress, RunnerOptions, RunStart

__all__ = ["EmbeddedRunner", "Progress", "RunStart", "RunnerOptions"]
