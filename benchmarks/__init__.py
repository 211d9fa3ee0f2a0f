"""Performance benchmarks: ``python -m benchmarks.run`` runs every ``bench_*`` module.

They print medians and are not tests (pytest never collects them).
"""

from __future__ import annotations
