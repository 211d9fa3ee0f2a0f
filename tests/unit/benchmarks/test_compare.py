"""benchmarks.compare: parsing what the benchmarks print, and which way is worse."""

from __future__ import annotations

import math

import pytest
from benchmarks.compare import Metric, Samples, cost_ratio, format_table, parse_metrics, rows_of

OUTPUT = """\
== embedded execution (issue 4) ==
W1 chain-200 in-run                      median    507.61 ms  p90    600.97 ms  (n=5)  target 500 ms
W4 64 x sleep(0.5) @16 in-run            median     2.093 s   p90     2.093 s   (n=2)
one-event compaction                     median       5.0 µs  p90     21.03 ms  (n=1000)
fold+publish batch=10000                     35,582 events/s  (100,000 events, 2.81 s)
1,000 pending timers: lateness           median     7.1 ms  p99    12.0 ms  max    15.0 ms  (n=1000)
W3 peak RSS (servo materialize)              149.2 MB  target 200 MB: ok
parquet bytes per task                         20.1 B (tasks table), 123.5 B (all tables)
{"repeat": 5}
"""


def test_medians_rates_and_sizes_are_parsed_in_base_units() -> None:
    metrics = parse_metrics(OUTPUT)
    assert list(metrics) == [
        "W1 chain-200 in-run",
        "W4 64 x sleep(0.5) @16 in-run",
        "one-event compaction",
        "fold+publish batch=10000",
        "1,000 pending timers: lateness",
        "W3 peak RSS (servo materialize)",
    ]
    assert metrics["W1 chain-200 in-run"].value == pytest.approx(0.50761)
    assert metrics["W4 64 x sleep(0.5) @16 in-run"].value == pytest.approx(2.093)
    assert metrics["one-event compaction"].value == pytest.approx(5e-6)
    assert metrics["fold+publish batch=10000"] == Metric(
        "fold+publish batch=10000", 35582, "events/s"
    )
    assert metrics["1,000 pending timers: lateness"].value == pytest.approx(0.0071)
    assert metrics["W3 peak RSS (servo materialize)"] == Metric(
        "W3 peak RSS (servo materialize)", 149.2, "MB"
    )


def test_ratio_is_heads_cost_whichever_way_the_metric_points() -> None:
    assert cost_ratio(Metric("t", 1.0, "s"), Metric("t", 1.2, "s")) == pytest.approx(1.2)
    # a rate that dropped from 1,200/s to 1,000/s costs 1.2 times as much
    assert cost_ratio(Metric("r", 1200, "events/s"), Metric("r", 1000, "events/s")) == 1.2
    assert cost_ratio(Metric("t", 0.0, "s"), Metric("t", 0.0, "s")) == 1.0
    assert cost_ratio(Metric("t", 0.0, "s"), Metric("t", 1.0, "s")) == math.inf


def test_the_table_takes_medians_over_rounds_and_flags_what_got_worse() -> None:
    base, head = Samples(), Samples()
    for value in (1.0, 3.0, 1.2):
        base.add({"slow": Metric("slow", value, "s"), "rate": Metric("rate", 100, "events/s")})
    for value in (1.3, 1.4, 0.9):
        head.add({"slow": Metric("slow", value, "s"), "rate": Metric("rate", 95, "events/s")})
    head.add({"new": Metric("new", 0.002, "s")})

    rows = rows_of("bench_x", base, head)

    assert [(r.metric, r.ratio, r.flagged) for r in rows] == [
        ("slow", pytest.approx(1.3 / 1.2), False),
        ("rate", pytest.approx(100 / 95), False),
        ("new", None, False),
    ]
    head.add({"slow": Metric("slow", 5.0, "s")})  # head's median becomes 1.35
    table = format_table(rows_of("bench_x", base, head))
    lines = table.splitlines()
    assert lines[0].split() == ["benchmark", "metric", "base", "head", "ratio"]
    assert "1.200 s" in lines[2] and "1.350 s" in lines[2] and lines[2].endswith("WORSE > 1.10")
    assert "100/s" in lines[3] and "95/s" in lines[3] and not lines[3].endswith("1.10")
    assert lines[4].split() == ["bench_x", "new", "-", "2.00", "ms", "-"]  # base never printed it
