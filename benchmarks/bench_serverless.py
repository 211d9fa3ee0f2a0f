"""The serverless mode on loopback (issue 13's targets), figures of one invocation.

    python -m benchmarks.bench_serverless [--repeat K] [--workers N] [--skip-enqueue]

- **enqueue**: one `CloudTasksDispatcher` creates 2,000 tasks in a paused queue of
  the local Cloud Tasks server (the real queue's cap is 500 dispatches/s); tasks/s.
- **W2 end to end**: wide-1000 submitted to `servo.testing.emulator` (fake-gcs-server,
  the local Cloud Tasks server pushing with OIDC tokens, a reconciler and N workers
  as `servo serve` processes) and followed to its end, every value checked; and, in
  the same invocation, embedded W2 in-run, with the ratio.
- **dispatch latency**: upstream finished -> downstream started, read from the run's
  task rows (`finished_at` of the upstream, `started_at` of the downstream; one
  machine, one clock) over the 199 edges of a W1 chain (in W2 a child's start waits
  for the queue's throughput, which the end-to-end figure measures).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._inrun import check_values, checked_run
from benchmarks._timing import from_samples, report
from benchmarks.workloads import nodes, servo_source, values_of, write_workload
from servo.config.settings import CloudSettings, load_settings
from servo.dispatch.cloud_tasks import CloudTasksDispatcher, CloudTasksReconcileQueue
from servo.dispatch.cloud_tasks_queue import sha256_hex
from servo.engine import schema as s
from servo.engine.request import TaskRequest
from servo.runner.remote import RunFollower, submit_run
from servo.sdk.loader import load_definitions
from servo.storage.factory import open_store
from servo.storage.local import LocalObjectStore
from servo.testing.cloud_tasks.server import LocalCloudTasks
from servo.testing.emulator import EmulatorOptions, GcpEmulator

ENQUEUE_TARGET_PER_S = 500.0
W2_TARGET_S = 10.0
P50_TARGET_S = 0.050
P99_TARGET_S = 0.250
ENQUEUED = 2000


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def enqueue_rate(repeat: int) -> float:
    """Median tasks/s one dispatcher creates in the local server."""
    rates = []
    with LocalCloudTasks() as server:
        cloud = CloudSettings.model_validate(
            {
                "provider": "gcp",
                "gcp": {"project": "bench", "region": "local"},
                "cloud_tasks": {"queue": "bench", "emulator_host": server.address},
                "cloud_run": {"worker_url": "http://127.0.0.1:9"},
            }
        )
        queue = server.ensure_queue("projects/bench/locations/local/queues/bench")
        client = server.client()
        client.pause_queue(name=queue.name)  # measure creation, not pushes
        dispatcher = CloudTasksDispatcher(cloud)
        try:
            for sample in range(repeat):
                requests = [_request(sample, i) for i in range(ENQUEUED)]
                start = time.perf_counter()
                for request in requests:
                    dispatcher.enqueue(request)
                rates.append(ENQUEUED / (time.perf_counter() - start))
        finally:
            dispatcher.close()
            client.transport.close()
    rate = statistics.median(rates)
    verdict = "ok" if rate >= ENQUEUE_TARGET_PER_S else "MISSED"
    print(f"{'enqueue, one dispatcher (tasks/s)':<40} median {rate:9.0f}/s   "
          f"(n={repeat})  target >= {ENQUEUE_TARGET_PER_S:.0f}/s: {verdict}")  # fmt: skip
    return rate


def _request(sample: int, i: int) -> TaskRequest:
    dispatch = f"dispatch:bench:default:r{sample}:t{i}:1"
    return TaskRequest("bench", "default", f"r{sample}", f"t{i}", f"t{i}", None, 1,
                       f"A{sample}-{i}", dispatch, "d_" + sha256_hex(dispatch))  # fmt: skip


def _latencies(tasks: list[s.TaskRow], upstream_of: dict[str, list[str]]) -> list[float]:
    by_key = {t.task_key: t for t in tasks}
    found = []
    for task in tasks:
        parents = [by_key[p] for p in upstream_of.get(task.task_key, ())]
        if not parents or task.started_at is None:
            continue
        ends = [p.finished_at for p in parents if p.finished_at is not None]
        if ends:
            found.append((task.started_at - max(ends)) / 1e6)
    return found


def serverless_runs(repeat: int, workers: int, work: Path) -> tuple[list[float], list[float]]:
    """W2 end-to-end seconds per sample, and the dispatch latencies of one W1
    (chain-200) run."""
    w2, w1 = nodes("W2"), nodes("W1")
    defs_path = work / "serverless_defs.py"
    defs_path.write_text(servo_source(w2 + w1) + "\n", encoding="utf-8")
    upstream = {node.name: list(node.parents) for node in w2 + w1}
    seconds: list[float] = []
    latencies: list[float] = []
    options = EmulatorOptions(defs=defs_path, workers=workers, database=False, sweep_interval_s=5.0)
    with GcpEmulator(options) as emulator:
        settings = load_settings(emulator.config_path, environ={})
        store = open_store(settings.storage, Path(settings.home))
        defs = load_definitions(str(defs_path))
        queue = CloudTasksReconcileQueue.from_settings(settings)

        def run(selection: str, values: dict[str, int], *, latency: bool) -> float:
            start = time.perf_counter()
            submitted = submit_run(store, defs, queue.notify, tenant_id="default",
                                   workspace_id="default", selection=selection)  # fmt: skip
            follower = RunFollower(store, "default", "default", submitted.run_id)
            ended = follower.wait(timeout_s=600, poll_s=0.1)  # as `servo materialize` polls
            elapsed = time.perf_counter() - start
            if ended is None or ended.status != s.RUN_SUCCEEDED:
                raise SystemExit(f"serverless run {submitted.run_id} ended {ended}")
            tasks = follower.poll()[1]
            check_values(store, tasks, values, f"serverless run {submitted.run_id}")
            if latency:
                latencies.extend(_latencies(tasks, upstream))
            return elapsed

        try:
            for _ in range(repeat):
                seconds.append(run("root+", values_of(w2), latency=False))
            run("a_0+", values_of(w1), latency=True)
        finally:
            queue.close()
    return seconds, latencies


def embedded_w2(repeat: int, work: Path) -> list[float]:
    path, values = write_workload("W2", work)
    defs = load_definitions(str(path))
    samples = []
    for sample in range(repeat):
        store = LocalObjectStore(work / f"embedded-{sample}", fsync=False)
        samples.append(checked_run(store, defs, values).in_run_s)
    return samples


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serverless")
    parser.add_argument("--repeat", type=int, default=3, help="samples per figure")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-enqueue", action="store_true", help="skip the enqueue rate")
    args = parser.parse_args(argv)
    print("== serverless: Cloud Tasks + servo serve on loopback (issue 13) ==")
    if not args.skip_enqueue:
        enqueue_rate(args.repeat)
    with tempfile.TemporaryDirectory(prefix="servo-bench-serverless-") as folder:
        work = Path(folder)
        seconds, latencies = serverless_runs(args.repeat, args.workers, work)
        embedded = embedded_w2(args.repeat, work)
    remote = from_samples("W2 serverless end to end", seconds)
    report(remote, W2_TARGET_S)
    local = from_samples("W2 embedded in-run", embedded)
    report(local)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    print(f"{'W2 serverless / embedded':<40} {remote.median / local.median:9.1f} x")
    for name, value, target in (("p50", p50, P50_TARGET_S), ("p99", p99, P99_TARGET_S)):
        verdict = "ok" if value <= target else "MISSED"
        print(
            f"{'dispatch latency ' + name:<40} {value * 1e3:9.1f} ms  (n={len(latencies)})  "
            f"target {target * 1e3:.0f} ms: {verdict}"
        )


if __name__ == "__main__":
    main()
