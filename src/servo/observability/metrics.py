"""Servo's Prometheus metrics: one registry, metrics declared once by name.

Modules declare the metrics they own at import time::

    from servo.observability import metrics

    EVENTS_FOLDED = metrics.counter("servo_events_folded_total", "Events folded.")

Declaring the same name twice returns the first object (so re-imports and tests
are safe); declaring it with another kind or other labels is a programming error.
Labels must stay low-cardinality: never a tenant, run or task id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

REGISTRY = CollectorRegistry(auto_describe=True)

_declared: dict[str, MetricWrapperBase] = {}

_M = TypeVar("_M", bound=MetricWrapperBase)

#: Latency buckets in seconds, from 100 µs to 60 s: engine steps are fast, tasks are not.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def _declare(kind: type[_M], name: str, doc: str, labels: Sequence[str], **kw: object) -> _M:
    existing = _declared.get(name)
    if existing is not None:
        if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labels):
            raise ValueError(f"metric {name} already declared with another kind or labels")
        return existing
    metric = kind(name, doc, labelnames=tuple(labels), registry=REGISTRY, **kw)  # type: ignore[arg-type]
    _declared[name] = metric
    return metric


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """Declare (or fetch) a counter. Prometheus appends ``_total`` if missing."""
    return _declare(Counter, name.removesuffix("_total"), doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    """Declare (or fetch) a gauge."""
    return _declare(Gauge, name, doc, labels)


def histogram(
    name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    """Declare (or fetch) a histogram with latency buckets by default."""
    return _declare(Histogram, name, doc, labels, buckets=tuple(buckets))


def render() -> bytes:
    """The registry in Prometheus text exposition format."""
    return generate_latest(REGISTRY)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one sample (0.0 when absent); for tests and the CLI."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
