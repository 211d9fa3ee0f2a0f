"""Embedded execution: orchestration overhead per task, end-to-end times, peak RSS.

In-run time is measured from `start_run` to the end of `wait` (definitions already
loaded); orchestration overhead per task = in-run seconds / tasks for workloads
whose assets do no work (W2, W3). Whole-process time runs `servo materialize` in a
fresh subprocess from a cold start. Every run's values are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._inrun import check_values
from benchmarks._timing import Timing, report
from benchmarks.workloads import write_workload
from servo.engine.snapshot import SnapshotReader
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

REPEAT = int(os.environ.get("SERVO_BENCH_REPEAT", "5"))
#: Homes are deleted at the end: on filesystems mounted with `discard`, deleting
#: files while a run is timed slows its writes.
_HOMES: list[Path] = []


def _in_run(name: str, work: Path, concurrency: int) -> tuple[float, int]:
    path, expected = write_workload(name, work)
    defs = load_definitions(str(path))
    home = Path(tempfile.mkdtemp(dir=work))
    store = LocalObjectStore(home, fsync=False)
    with EmbeddedRunner(store, defs, RunnerOptions(concurrency=concurrency)) as runner:
        start = time.perf_counter()
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        elapsed = time.perf_counter() - start
        if run.status != "SUCCEEDED":
            raise SystemExit(f"{name}: run ended {run.status}")
        check_values(store, runner.state.tasks_of(run_id), expected, name)
    _HOMES.append(home)
    return elapsed, len(expected)


def _samples(name: str, work: Path, concurrency: int, repeat: int) -> tuple[list[float], int]:
    times = []
    tasks = 0
    for _ in range(repeat):
        elapsed, tasks = _in_run(name, work, concurrency)
        times.append(elapsed)
    return sorted(times), tasks


def _timing(name: str, samples: list[float]) -> Timing:
    return Timing(
        name,
        samples[len(samples) // 2],
        samples[min(len(samples) - 1, int(len(samples) * 0.9))],
        len(samples),
    )


def _check_home(name: str, home: Path, run_id: str, expected: dict[str, int]) -> None:
    store = LocalObjectStore(home, fsync=False)
    snapshot = SnapshotReader(store, "default", "default").load()
    check_values(store, snapshot.tasks_of(run_id), expected, name)


_WRAPPER = (
    "import json, resource, subprocess, sys, time;"
    "t=time.perf_counter();"
    "p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
    "e=time.perf_counter()-t;"
    "rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
    "print(json.dumps({'elapsed': e, 'rss_kib': rss, 'code': p.returncode,"
    " 'stdout': p.stdout, 'stderr': p.stderr[-4000:]}))"
)


def _whole_process(name: str, work: Path) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of `servo materialize` in a fresh process; values checked."""
    path, expected = write_workload(name, work)
    home = work / f"home-{name}-{time.monotonic_ns()}"
    servo = shutil.which("servo")
    command = [servo] if servo else [sys.executable, "-m", "servo.cli"]
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command, "materialize", "--defs", str(path),
         "--home", str(home), "--json", "--concurrency", "4"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise SystemExit(f"{name}: servo materialize exited {result['code']}: {result['stderr']}")
    _check_home(name, home, json.loads(result["stdout"])["run_id"], expected)
    shutil.rmtree(home, ignore_errors=True)
    return float(result["elapsed"]), int(result["rss_kib"])


def _create_latency(work: Path) -> float:
    """Median seconds to create a small file in `work` (context for the figures)."""
    probe = Path(tempfile.mkdtemp(dir=work))
    samples = []
    for i in range(300):
        start = time.perf_counter()
        (probe / f"f{i}").write_bytes(b"x" * 200)
        samples.append(time.perf_counter() - start)
    shutil.rmtree(probe)
    return sorted(samples)[len(samples) // 2]


def main() -> None:
    print("== embedded execution (issue 4) ==")
    # Homes live where a user's would (under the working directory), not in /tmp.
    base = Path(os.environ.get("SERVO_BENCH_DIR", ".bench"))
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        work = Path(tmp)
        print(f"{'file create latency (context)':<40} median {_create_latency(work) * 1e6:9.1f} µs")
        for name, concurrency, target in (("W2", 4, 0.001), ("W3", 4, 0.001)):
            samples, tasks = _samples(name, work, concurrency, REPEAT)
            per_task = [t / tasks for t in samples]
            report(_timing(f"{name} overhead per task ({tasks} tasks)", per_task), target)
        samples, _ = _samples("W1", work, 4, REPEAT)
        report(_timing("W1 chain-200 in-run", samples), 0.5)
        samples, _ = _samples("W4", work, 16, max(1, REPEAT // 2))
        report(_timing("W4 64 x sleep(0.5) @16 in-run", samples), 2.3)
        walls = sorted(_whole_process("W2", work)[0] for _ in range(max(1, REPEAT // 2)))
        report(_timing("W2 servo materialize cold (process)", walls), 3.0)
        rss = max(_whole_process("W3", work)[1] for _ in range(2))
        print(f"{'W3 peak RSS (servo materialize)':<40} {rss / 1024:9.1f} MB  target 200 MB: "
              + ("ok" if rss / 1024 <= 200 else "MISSED"))  # fmt: skip
        for home in _HOMES:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"repeat": REPEAT}))


if __name__ == "__main__":
    main()
