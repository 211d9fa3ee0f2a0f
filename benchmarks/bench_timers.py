"""Durable timers and recovery (issue 6): how late timers fire, how fast a run resumes.

- one retry timer: lateness = fired_at - due_at of a retry timer (a run whose asset
  fails once with a 0.2 s retry delay), over several runs;
- 1,000 pending timers: 1,000 assets fail at once and wait on retry timers due
  0.5-1.5 s later; the lateness of every timer (the benchmark checks that every
  timer was requested before it was due, so lateness measures delivery alone);
- resume after SIGKILL: `servo materialize` is killed mid-run and started again with
  the same idempotency key; the time from the restart to the first asset the
  resumed runner starts.

Lateness is read from the `timers` projection (`fired_at - due_at`), so it measures
the engine's own decision to fire, watermark check included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import Timing, report
from servo import Definitions, RetryPolicy, asset
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.storage.local import LocalObjectStore

REPEAT = int(os.environ.get("SERVO_BENCH_REPEAT", "5"))


def _lateness_ms(runner: EmbeddedRunner, run_id: str) -> list[float]:
    timers = [
        t
        for t in runner.state.rows("timers")
        if t.run_id == run_id and t.kind == "retry" and t.fired_at is not None
    ]
    born_late = sum(1 for t in timers if t.requested_at > t.due_at)
    if born_late:
        raise SystemExit(f"{born_late} timers were requested after their due time")
    return sorted((t.fired_at - t.due_at) / 1000 for t in timers)


def _failing_assets(count: int, delay: float, jitter: float) -> Definitions:
    failed: set[str] = set()
    policy = RetryPolicy(max_attempts=2, initial_delay=delay, jitter=jitter)
    assets = []
    for i in range(count):
        name = f"t_{i}"

        def body(name: str = name) -> str:
            if name not in failed:
                failed.add(name)
                raise ConnectionError("first attempt fails")
            return name

        body.__name__ = name
        assets.append(asset(name=name, retry=policy)(body))
    return Definitions(assets=assets)


def _run(work: Path, defs: Definitions, concurrency: int) -> list[float]:
    home = Path(tempfile.mkdtemp(dir=work))
    with EmbeddedRunner(LocalObjectStore(home, fsync=False), defs,
                        RunnerOptions(concurrency=concurrency)) as runner:  # fmt: skip
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        if run.status != "SUCCEEDED":
            raise SystemExit(f"timer benchmark run ended {run.status}")
        return _lateness_ms(runner, run_id)


CHAIN = """
import os, time
from pathlib import Path
from servo import asset
LOG = Path(os.environ["EFFECTS"])
def mark(name):
    with LOG.open("a") as f:
        f.write(f"{name} {time.time()}\\n")
    time.sleep(0.15)
    return name
""" + "".join(
    f"\n@asset\ndef a_{i}({'a_' + str(i - 1) if i else ''}):\n    return mark('a_{i}')\n"
    for i in range(12)
)


def _resume_seconds(work: Path) -> float:
    defs = work / "chain_defs.py"
    defs.write_text(CHAIN)
    log = work / f"effects-{time.monotonic_ns()}.log"
    home = work / f"home-{time.monotonic_ns()}"
    servo = shutil.which("servo")
    command = [*([servo] if servo else [sys.executable, "-m", "servo.cli"]), "materialize",
               "--defs", str(defs), "--home", str(home), "--idempotency-key", "resume"]  # fmt: skip
    env = {**os.environ, "EFFECTS": str(log)}
    victim = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not log.exists() or len(log.read_text().splitlines()) < 4:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    seen = len(log.read_text().splitlines())
    restarted = time.time()
    resumed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while len(log.read_text().splitlines()) <= seen:
        if resumed.poll() is not None:
            raise SystemExit(
                f"resumed run ended early: {resumed.stderr.read() if resumed.stderr else ''}"
            )
        time.sleep(0.005)
    first = float(log.read_text().splitlines()[seen].split()[1])
    resumed.wait(60)
    if resumed.returncode != 0:
        raise SystemExit("resumed run failed")
    return first - restarted


def main() -> None:
    print("== durable timers and recovery (issue 6) ==")
    base = Path(os.environ.get("SERVO_BENCH_DIR", ".bench"))
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        work = Path(tmp)
        single = sorted(_run(work, _failing_assets(1, 0.2, 0.0), 1)[0] for _ in range(REPEAT))
        report(Timing("one retry timer: lateness", single[len(single) // 2] / 1000,
                      single[int(len(single) * 0.9)] / 1000, len(single)), 0.050)  # fmt: skip
        late = _run(work, _failing_assets(1000, 1.0, 0.5), 8)
        verdict = "ok" if late[-1] <= 100 else "MISSED"
        print(f"{'1,000 pending timers: lateness':<40} median {late[len(late) // 2]:7.1f} ms"
              f"  p99 {late[int(len(late) * 0.99)]:7.1f} ms  max {late[-1]:7.1f} ms"
              f"  (n={len(late)})  target max 100 ms: {verdict}")  # fmt: skip
        resume = sorted(_resume_seconds(work) for _ in range(max(3, REPEAT // 2)))
        report(Timing("SIGKILL then restart: resumed after", resume[len(resume) // 2],
                      resume[-1], len(resume)), 1.0)  # fmt: skip


if __name__ == "__main__":
    main()
