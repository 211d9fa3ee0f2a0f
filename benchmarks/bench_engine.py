"""Engine benchmarks: fold + publish throughput, one-event latency, snapshot loads.

Run with ``python -m benchmarks.bench_engine`` (``--profile`` adds a cProfile of the
10,000-event batches; ``SERVO_BENCH_QUICK=1`` skips the slowest measures). Everything
runs on `LocalObjectStore` in a temporary folder.

Targets: >= 50,000 events/s in batches of 10,000; one-event compaction including the
manifest publish <= 5 ms on local disk; loading a 100,000-task projection <= 50 ms
cold and <= 1 ms cached.

Events are realistic run lifecycles: RunRequested with 10 tasks, then per task
DispatchRequested, DispatchEnqueued, TaskStarted and TaskFinished (41 events a run).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks._timing import Timing, measure
from servo.engine import events as ev
from servo.engine import projections, snapshot
from servo.engine.compactor import Compactor
from servo.engine.snapshot import SnapshotReader
from servo.storage.local import LocalObjectStore
from servo.testing.lifecycles import lifecycle

#: Set by ``benchmarks.compare --quick``: skip the slowest measures (fsync throughput,
#: batches of 100); the names of the measures that run do not change.
QUICK = os.environ.get("SERVO_BENCH_QUICK") == "1"
TENANT = "bench"
WORKSPACE = "main"
TASKS_PER_RUN = 10


def event_stream(count: int, prefix: str = "r") -> list[ev.Event]:
    """`count` events of consecutive run lifecycles (the last run may be cut short)."""
    out: list[ev.Event] = []
    run = 0
    while len(out) < count:
        out += lifecycle(
            f"{prefix}{run:07d}",
            TASKS_PER_RUN,
            start=1_700_000_000_000_000 + run * 1_000_000,
            tenant=TENANT,
            workspace=WORKSPACE,
        )
        run += 1
    return out[:count]


def _compact(compactor: Compactor, events: list[ev.Event]) -> None:
    """Fold and publish, as the runner does after a step when a publish is due."""
    compactor.fold(events)
    compactor.publish()


def batches(events: list[ev.Event], size: int) -> Iterator[list[ev.Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def throughput(root: Path, events: list[ev.Event], size: int, fsync: bool) -> float:
    """Events per second folded and published in batches of `size`."""
    compactor = Compactor(LocalObjectStore(root, fsync=fsync), TENANT, WORKSPACE)
    started = time.perf_counter()
    for batch in batches(events, size):
        _compact(compactor, batch)
    elapsed = time.perf_counter() - started
    rate = len(events) / elapsed
    verdict = ""
    if size == 10_000:
        verdict = "  target 50,000/s: " + ("ok" if rate >= 50_000 else "MISSED")
    print(
        f"{'fold+publish batch=' + str(size) + (' fsync' if fsync else ''):<40} "
        f"{rate:>10,.0f} events/s  ({len(events):,} events, {elapsed:.2f} s){verdict}"
    )
    return rate


def one_event_latency(root: Path, fsync: bool, label: str = "") -> Timing:
    """Median latency of compacting (and publishing) one event on a warm projection."""
    compactor = Compactor(LocalObjectStore(root, fsync=fsync), TENANT, WORKSPACE)
    for batch in batches(event_stream(20_000, "warm"), 10_000):
        _compact(compactor, batch)
    singles = iter(event_stream(2_000, "single"))
    name = "one-event compaction" + label + (" fsync" if fsync else "")
    return measure(name, lambda: _compact(compactor, [next(singles)]), repeat=1_000, target=0.005)


def file_create(root: Path, label: str) -> Timing:
    """What one create-only write of a small object costs on this file system."""
    store = LocalObjectStore(root, fsync=False)
    names = iter(range(10**9))
    return measure(
        f"file create{label} (1 KiB, no fsync)",
        lambda: store.put_if_absent(f"x/{next(names)}", b"x" * 1024),
        repeat=300,
    )


def snapshot_loads(root: Path) -> None:
    """Cold and cached loads of a 100,000-task projection; Parquet bytes per task."""
    store = LocalObjectStore(root, fsync=False)
    compactor = Compactor(store, TENANT, WORKSPACE)
    runs = 100_000 // TASKS_PER_RUN
    events = event_stream(runs * (1 + 4 * TASKS_PER_RUN), "big")
    for batch in batches(events, 50_000):
        _compact(compactor, batch)
    compactor.rebuild_events(events)  # one base file per table, no deltas
    reader = SnapshotReader(store, TENANT, WORKSPACE)
    assert reader.load().table("tasks").num_rows == 100_000

    def cold() -> None:
        projections.clear_cache()
        snapshot.clear_merge_cache()

    measure("snapshot load 100k tasks cold", lambda: reader.load().table("tasks"),
            repeat=10, setup=cold, target=0.050)  # fmt: skip
    measure("snapshot load all tables cold", lambda: _all_tables(reader), repeat=10, setup=cold)
    measure("snapshot load 100k tasks cached", lambda: reader.load().table("tasks"),
            repeat=200, target=0.001)  # fmt: skip
    manifest = reader.load().manifest
    assert manifest is not None
    measure("snapshot of a manifest cached", lambda: reader.load(manifest).table("tasks"),
            repeat=200)  # fmt: skip
    files = manifest.tables
    tasks_path = files["tasks"].base
    assert tasks_path is not None
    tasks_bytes = len(store.get(tasks_path).data)
    total = sum(len(store.get(p).data) for f in files.values() for p in f.files)
    print(
        f"{'parquet bytes per task':<40} {tasks_bytes / 100_000:>10.1f} B (tasks table), "
        f"{total / 100_000:.1f} B (all tables)"
    )


def _all_tables(reader: SnapshotReader) -> None:
    snap = reader.load()
    for name in ("runs", "tasks", "attempts", "dep_satisfaction", "dispatch_outbox", "timers"):
        snap.table(name)


def profile_batches(root: Path, events: list[ev.Event]) -> None:
    """cProfile of folding and publishing `events` in batches of 10,000."""
    compactor = Compactor(LocalObjectStore(root, fsync=False), TENANT, WORKSPACE)
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in batches(events, 10_000):
        _compact(compactor, batch)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> None:
    """Run every engine benchmark and print one line per measure."""
    args = sys.argv[1:] if argv is None else argv
    events = event_stream(100_000)
    with tempfile.TemporaryDirectory(prefix="servo-bench-") as tmp:
        root = Path(tmp)
        syncs = (False,) if QUICK else (False, True)
        for fsync in syncs:
            for size in (10_000,) if QUICK else (10_000, 100):
                throughput(root / f"tp-{size}-{fsync}", events, size, fsync)
            throughput(root / f"tp-1-{fsync}", events[:2_000], 1, fsync)
        for fsync in syncs:
            one_event_latency(root / f"one-{fsync}", fsync)
        file_create(root / "create", "")
        shm = Path("/dev/shm")
        if shm.is_dir():  # separates CPU from file-system cost
            with tempfile.TemporaryDirectory(prefix="servo-bench-", dir=shm) as ram:
                one_event_latency(Path(ram) / "one", False, " (tmpfs)")
                file_create(Path(ram) / "create", " (tmpfs)")
        snapshot_loads(root / "snap")
        if "--profile" in args:
            profile_batches(root / "profile", events)


if __name__ == "__main__":
    main()
