"""What `storage.fsync` costs: per write, and per task of a materialize.

Every figure is taken with fsync off and on in the same process, alternating, on the
same file system (homes under ``SERVO_BENCH_DIR``, default ``./.bench``, where a
user's would be: not /tmp, which may be a RAM disk where fsync costs nothing), and
printed with the ratio on/off.

- **write**: one `LocalObjectStore.put_if_absent` of a 600-byte object (the size of a
  small ledger batch), into a folder that exists: file fsync + folder fsync.
- **materialize**: in-run time (from `start_run` to the end of `wait`) per task of
  W1 (chain-200: one task ready at a time, so about one ledger batch per task, the
  worst case for group commit) and W2 (wide-1000: many reports per loop iteration,
  one batch for all of them). Every value written is fsynced too when fsync is on.

``python -m benchmarks.bench_durability`` (``SERVO_BENCH_REPEAT`` samples, 5 by default).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks._timing import Timing, report
from benchmarks.workloads import write_workload
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

REPEAT = int(os.environ.get("SERVO_BENCH_REPEAT", "5"))
_WRITES = 200
_PAYLOAD = b"x" * 600


def _write_samples(work: Path, fsync: bool) -> list[float]:
    """Seconds per `put_if_absent`, one sample per write."""
    home = Path(tempfile.mkdtemp(dir=work))
    store = LocalObjectStore(home, fsync=fsync)
    store.put_if_absent("ledger/t/w/batches/first.json", _PAYLOAD)  # the folder exists
    samples = []
    for i in range(_WRITES):
        start = time.perf_counter()
        store.put_if_absent(f"ledger/t/w/batches/{i:06d}.json", _PAYLOAD)
        samples.append(time.perf_counter() - start)
    shutil.rmtree(home, ignore_errors=True)
    return samples


def _in_run_per_task(defs_path: Path, work: Path, fsync: bool) -> float:
    defs = load_definitions(str(defs_path))
    home = Path(tempfile.mkdtemp(dir=work))
    store = LocalObjectStore(home, fsync=fsync)
    with EmbeddedRunner(store, defs, RunnerOptions(concurrency=4)) as runner:
        start = time.perf_counter()
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        elapsed = time.perf_counter() - start
        tasks = len(runner.state.tasks_of(run_id))
    if run.status != "SUCCEEDED":
        raise SystemExit(f"{defs_path.name}: run ended {run.status}")
    shutil.rmtree(home, ignore_errors=True)
    return elapsed / tasks


def _median(samples: list[float]) -> Timing:
    ordered = sorted(samples)
    return Timing("", ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)], len(ordered))


def _pair(name: str, off: list[float], on: list[float]) -> dict[str, float]:
    t_off, t_on = _median(off), _median(on)
    report(Timing(f"{name} fsync off", t_off.median, t_off.p90, t_off.samples))
    report(Timing(f"{name} fsync on", t_on.median, t_on.p90, t_on.samples))
    ratio = t_on.median / t_off.median
    extra_ms = (t_on.median - t_off.median) * 1e3
    print(f"{name + ' ratio on/off':<40} {ratio:9.2f} x   (+{extra_ms:.3f} ms)")
    return {"off_ms": t_off.median * 1e3, "on_ms": t_on.median * 1e3, "ratio": ratio}


def main() -> None:
    print("== durability: the cost of storage.fsync ==")
    base = Path(os.environ.get("SERVO_BENCH_DIR", ".bench"))
    base.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        work = Path(tmp)
        off: list[float] = []
        on: list[float] = []
        for _ in range(REPEAT):
            off += _write_samples(work, False)
            on += _write_samples(work, True)
        figures["write"] = _pair("write 600 B", off, on)
        for name in ("W1", "W2"):
            path, _ = write_workload(name, work)
            off, on = [], []
            for _ in range(REPEAT):
                off.append(_in_run_per_task(path, work, False))
                on.append(_in_run_per_task(path, work, True))
            figures[name] = _pair(f"{name} in-run per task", off, on)
    print(json.dumps({"repeat": REPEAT, **figures}))


if __name__ == "__main__":
    main()
