"""Tiny timing helper shared by the benchmarks: run N times, print median and p90."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per call over the samples.

    Attributes:
        name: benchmark name.
        median: median seconds per call.
        p90: 90th percentile seconds per call.
        samples: how many samples were taken.
    """

    name: str
    median: float
    p90: float
    samples: int


def _human(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:9.2f} ms"
    return f"{seconds:9.3f} s "


def measure(
    name: str,
    fn: Callable[[], Any],
    *,
    repeat: int = 50,
    number: int = 1,
    setup: Callable[[], Any] | None = None,
    target: float | None = None,
) -> Timing:
    """Time `fn` `repeat` times (each sample = `number` calls), print and return it.

    Args:
        name: printed first on the line.
        fn: the code under test.
        repeat: number of samples.
        number: calls per sample, for very fast functions.
        setup: run before each sample, not timed.
        target: seconds; when given the line says whether the median meets it.
    """
    samples: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    timing = Timing(name, statistics.median(samples), p90, len(samples))
    report(timing, target)
    return timing


def from_samples(name: str, samples: list[float]) -> Timing:
    """The median and p90 of `samples` (seconds) already taken."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return Timing(name, statistics.median(ordered), p90, len(ordered))


def report(timing: Timing, target: float | None = None) -> None:
    """Print one line: name, median, p90, and the verdict against `target`."""
    verdict = ""
    if target is not None:
        verdict = f"  target {_human(target).strip()}: " + (
            "ok" if timing.median <= target else "MISSED"
        )
    print(
        f"{timing.name:<40} median {_human(timing.median)}  p90 {_human(timing.p90)}"
        f"  (n={timing.samples}){verdict}"
    )
