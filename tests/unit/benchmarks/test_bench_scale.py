"""benchmarks.bench_scale: what an invocation measures, and one tiny sample end to end.

No timing is asserted: the figures are the benchmark's output, not a test's verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import bench_scale
from benchmarks._inrun import checked_run
from benchmarks.bench_scale import ScaleArgs, history_points, parse_args
from benchmarks.workloads import write_scaled

from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVO_BENCH_QUICK", raising=False)
    monkeypatch.delenv("SERVO_BENCH_REPEAT", raising=False)


def test_defaults_run_every_size_and_a_hundred_runs_of_history() -> None:
    args = parse_args([])
    assert args == ScaleArgs()
    assert args.sizes() == [100, 1_000, 10_000, 100_000]
    assert args.history_runs == 100
    assert (args.samples(1_000), args.samples(100_000)) == (3, 1)


def test_flags_set_sizes_history_and_samples() -> None:
    args = parse_args(
        [
            "--max-n",
            "1000",
            "--history-runs",
            "1000",
            "--repeat",
            "5",
            "--repeat-large",
            "2",
            "--no-cold",
        ]
    )
    assert args.sizes() == [100, 1_000]
    assert args.history_runs == 1_000
    assert (args.samples(100), args.samples(100_000)) == (5, 2)
    assert not args.cold


def test_quick_caps_sizes_and_history(monkeypatch: pytest.MonkeyPatch) -> None:
    quick = parse_args(["--quick"])
    assert quick.sizes() == [100, 1_000, 10_000]
    assert quick.history_runs == 20
    monkeypatch.setenv("SERVO_BENCH_QUICK", "1")
    assert parse_args([]) == quick


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])


def test_history_points_stop_at_the_runs_made() -> None:
    assert history_points(100) == [1, 10, 100]
    assert history_points(1_000) == [1, 10, 100, 1_000]
    assert history_points(20) == [1, 10, 20]
    assert history_points(0) == []


def test_a_sample_runs_the_generated_graph_and_reports_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_scaled("chain", bench_scale.WARM_N, tmp_path)
    write_scaled("chain", 12, tmp_path)
    bench_scale.main(["--sample", "chain", "12", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tasks"] == 12
    assert result["in_run_s"] > 0
    assert result["rss_kib"] >= result["loaded_rss_kib"] > 0


def test_a_run_with_a_wrong_value_is_not_reported(tmp_path: Path) -> None:
    path, values = write_scaled("wide", 4, tmp_path)
    values["c_2"] = 99
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    with pytest.raises(SystemExit, match="c_2 = 3, expected 99"):
        checked_run(store, load_definitions(str(path)), values)
