"""Performance benchmarks: ``python -m benchmarks.run`` runs every ``bench_*`` module.

They print medians and are not tests (pytest never collects them).
``python -m benchmarks.compare --base REV`` measures a revision against another in one
session (see README, "Benchmarks").
"""

from __future__ import annotations
