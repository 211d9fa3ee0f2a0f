"""The Celery edge on this machine's RabbitMQ (issue 14's targets), one invocation.

    python -m benchmarks.bench_celery [--repeat K] [--workers N]

- **bare Celery**: 1,000 no-op tasks sent to N ``celery worker`` processes (threads
  pool, 4 each) and waited for through a Redis result backend: what Celery itself
  costs for the task count of W2.
- **W2 through Servo**: wide-1000 submitted to N ``servo celery worker`` processes
  (threads pool, 4 each; they also reconcile) and followed to its end, every value
  checked; the store is a local home every process shares.
- the ratio of the two medians, measured in the same run.

Needs RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379 (the machine's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks._inrun import check_values
from benchmarks._timing import from_samples, report
from benchmarks.workloads import nodes, servo_source, values_of
from servo.config.settings import load_settings
from servo.dispatch.celery_edge import CeleryReconcileQueue, app_for
from servo.engine import schema as s
from servo.runner.remote import RunFollower, submit_run
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BACKEND = "redis://127.0.0.1:6379/3"
W2_TARGET_S = 10.0
RATIO_AIM = 3.0
NOOPS = 1000

NOOP_APP = f"""
from celery import Celery

app = Celery("bench_noop", broker={BROKER!r}, backend={BACKEND!r})
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                worker_prefetch_multiplier=1, task_acks_late=True,
                worker_enable_remote_control=False)


@app.task(name="bench.noop")
def noop(i):
    return i
"""


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def bare_celery(repeat: int, workers: int, work: Path) -> list[float]:
    """Seconds for `NOOPS` no-op tasks through `workers` Celery worker processes."""
    (work / "bench_noop_app.py").write_text(NOOP_APP, encoding="utf-8")
    sys.path.insert(0, str(work))
    import bench_noop_app  # type: ignore[import-not-found]

    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "celery", "-A", "bench_noop_app", "worker", "-P", "threads",
               "-c", "4", "-Q", queue, "--loglevel", "WARNING", "--without-gossip",
               "--without-mingle", "--without-heartbeat"]  # fmt: skip
    processes = [_start([*command, "-n", f"noop{i}-{uuid.uuid4().hex[:6]}@%h"], env,
                        work / f"noop-{i}.log") for i in range(workers)]  # fmt: skip
    samples = []
    try:
        noop = bench_noop_app.noop
        noop.apply_async(args=[0], queue=queue).get(timeout=60)  # the workers are up
        for _ in range(repeat):
            start = time.perf_counter()
            results = [noop.apply_async(args=[i], queue=queue) for i in range(NOOPS)]
            assert [r.get(timeout=120) for r in results] == list(range(NOOPS))
            samples.append(time.perf_counter() - start)
    finally:
        _stop(processes)
        bench_noop_app.app.close()
    return samples


def servo_w2(repeat: int, workers: int, work: Path) -> list[float]:
    """Seconds for W2 end to end through `workers` ``servo celery worker`` processes."""
    w2 = nodes("W2")
    defs_path = work / "w2_defs.py"
    defs_path.write_text(servo_source(w2) + "\n", encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    config = {
        "SERVO_CLOUD_PROVIDER": "celery",
        "SERVO_CLOUD_CELERY_BROKER_URL": BROKER,
        "SERVO_CLOUD_CELERY_QUEUE": f"bench-tasks-{suffix}",
        "SERVO_CLOUD_CELERY_RECONCILE_QUEUE": f"bench-reconcile-{suffix}",
        "SERVO_HOME": str(work / "home"),
        "SERVO_STORAGE_FSYNC": "false",
        "SERVO_LOG_LEVEL": "WARNING",
    }
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}, **config}
    command = [sys.executable, "-m", "servo", "celery", "worker", "--defs", str(defs_path),
               "--concurrency", "4"]  # fmt: skip
    processes = [_start(command, env, work / f"servo-{i}.log") for i in range(workers)]
    settings = load_settings(None, environ=config)
    store = LocalObjectStore(work / "home", fsync=False)
    defs = load_definitions(str(defs_path))
    queue = CeleryReconcileQueue(app_for(settings.cloud.celery), settings.cloud.celery)
    samples = []
    try:
        time.sleep(3)  # the workers connect
        for _ in range(repeat):
            start = time.perf_counter()
            submitted = submit_run(store, defs, queue.notify, tenant_id="default",
                                   workspace_id="default", selection="root+")  # fmt: skip
            follower = RunFollower(store, "default", "default", submitted.run_id)
            ended = follower.wait(timeout_s=300, poll_s=0.1)
            elapsed = time.perf_counter() - start
            if ended is None or ended.status != s.RUN_SUCCEEDED:
                raise SystemExit(f"W2 through Celery ended {ended}")
            check_values(store, follower.poll()[1], values_of(w2), "W2 through Celery")
            samples.append(elapsed)
    finally:
        queue.close()
        _stop(processes)
    return samples


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_celery")
    parser.add_argument("--repeat", type=int, default=3, help="samples per figure")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    print("== Celery edge: RabbitMQ on loopback (issue 14) ==")
    with tempfile.TemporaryDirectory(prefix="servo-bench-celery-") as folder:
        work = Path(folder)
        noops = bare_celery(args.repeat, args.workers, work)
        w2 = servo_w2(args.repeat, args.workers, work)
    bare = from_samples(f"bare Celery, {NOOPS} no-op tasks", noops)
    servo = from_samples("W2 through Servo on Celery", w2)
    report(bare)
    report(servo, W2_TARGET_S)
    ratio = servo.median / bare.median
    verdict = "ok" if ratio <= RATIO_AIM else "above the aim"
    print(f"{'Servo W2 / bare Celery':<40} {ratio:9.1f} x   aim <= {RATIO_AIM:.0f}x: {verdict}")


if __name__ == "__main__":
    main()
