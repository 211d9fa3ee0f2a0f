"""Run every ``benchmarks/bench_*.py`` module's ``main()``: ``python -m benchmarks.run``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(only: list[str] | None = None) -> None:
    """Import each ``bench_*`` module in name order and call its ``main()``."""
    folder = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda i: i.name):
        if not info.name.startswith("bench_") or (only and info.name not in only):
            continue
        print(f"== {info.name}")
        module = importlib.import_module(f"benchmarks.{info.name}")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:] or None)
