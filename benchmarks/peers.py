"""Servo against Dagster and Prefect on the same workloads: ``python -m benchmarks.peers``.

``python -m benchmarks.peers [--rounds K] [--workloads W1,W2,W3] [--w4]`` (see
benchmarks/README.md). Each peer is installed, pinned, in its own virtualenv under
``{SERVO_BENCH_DIR}/venvs/{dagster,prefect}`` (default ``.bench``), created on first use;
Servo runs in this interpreter.

Per workload and tool it prints two medians over the rounds:

- **in-run**: one run of the whole graph, timed around the run call only, definitions
  built before, in a process that has already run the graph once (so no tool's
  one-time costs, such as Prefect starting its ephemeral server, count). Servo:
  `start_run` to the end of `wait` on a new home (`benchmarks._inrun`), concurrency 4.
- **whole-process**: a fresh interpreter importing the tool, building the definitions
  and running the graph once. Servo: ``servo materialize`` (bench_embedded's helper,
  which also waits for the process to exit); a peer: from spawning its script to the
  end of its first run.

and the ratios Servo/Dagster and Servo/Prefect (target <= 0.02 in-run on W1-W3). Rounds
interleave the tools, alternating their order (Servo, Dagster, Prefect, then Prefect,
Dagster, Servo), so drift on a shared machine hits all alike. Every run's values are
checked against `benchmarks.workloads`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._peer_programs import dagster_program, prefect_program
from benchmarks._timing import Timing, report
from benchmarks.workloads import WORKLOADS, nodes

if TYPE_CHECKING:
    from servo.storage.local import LocalObjectStore

#: The pinned releases each peer's virtualenv gets.
REQUIREMENTS = {
    "dagster": ("dagster==1.13.29",),
    "prefect": ("prefect==3.8.8", "fastapi==0.154.0"),
}
TOOLS = ("servo", "dagster", "prefect")
PEERS = ("dagster", "prefect")
CONCURRENCY = 4
RATIO_TARGET = 0.02
#: Workloads the in-run ratio target applies to.
TARGETED = ("W1", "W2", "W3")
#: A peer's script (two runs of a workload) running longer is stopped.
PEER_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class PeerArgs:
    """What one invocation runs.

    Attributes:
        rounds: rounds of every tool on every workload.
        workloads: workload names, in order.
    """

    rounds: int = 3
    workloads: tuple[str, ...] = TARGETED


def parse_args(argv: Sequence[str]) -> PeerArgs:
    """The invocation's settings (``--w4`` adds W4 to the workloads)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="Servo against Dagster and Prefect on the same workloads.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--workloads", default=",".join(TARGETED), help="comma-separated (default W1,W2,W3)"
    )
    parser.add_argument("--w4", action="store_true", help="also run W4 (64 x sleep 0.5 s)")
    ns = parser.parse_args(list(argv))
    names = [w.strip().upper() for w in ns.workloads.split(",") if w.strip()]
    if ns.w4 and "W4" not in names:
        names.append("W4")
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    if ns.rounds < 1:
        parser.error("--rounds must be >= 1")
    return PeerArgs(rounds=ns.rounds, workloads=tuple(names))


def round_order(round_index: int) -> tuple[str, ...]:
    """The tools' order in round `round_index` (0-based): forwards, then backwards."""
    return TOOLS if round_index % 2 == 0 else TOOLS[::-1]


# ----------------------------------------------------------------- virtualenvs
def ensure_venv(tool: str, base: Path) -> Path:
    """The interpreter of `tool`'s virtualenv under `base`/venvs, created and the pinned
    requirements installed the first time (a marker file records what was installed)."""
    root = base / "venvs" / tool
    python = root / "bin" / "python"
    marker = root / ".servo-bench-requirements"
    wanted = "\n".join(REQUIREMENTS[tool])
    if python.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return python
    print(f"  installing {', '.join(REQUIREMENTS[tool])} into {root} ...", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[tool]],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(
            f"cannot install {tool} into {root}: {exc.cmd[0]} exited {exc.returncode}"
            f" (remove {root} to start again)"
        ) from exc
    marker.write_text(wanted, encoding="utf-8")
    return python


# ------------------------------------------------------------------------ runs
@dataclass(slots=True)
class Samples:
    """Seconds measured for one tool on one workload, a sample per round."""

    in_run: list[float] = field(default_factory=list)
    process: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)


def _peer_environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the peer's venv, nothing of Servo's
    env["PREFECT_HOME"] = str(home / "prefect")  # a fresh database per process
    env["DO_NOT_TRACK"] = "1"
    return env


def _run_peer(python: Path, script: Path, work: Path, samples: Samples) -> None:
    """One round of a peer: its script in a fresh process; the figures appended."""
    home = Path(tempfile.mkdtemp(dir=work, prefix="peer-home-"))
    spawned = time.time()
    try:
        done = subprocess.run(
            [str(python), str(script)],
            capture_output=True,
            text=True,
            cwd=home,
            env=_peer_environment(home),
            timeout=PEER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"  {script.stem}: stopped after {PEER_TIMEOUT_S:.0f} s")
        return
    # The JSON line is printed only after every value was checked; some tools exit
    # non-zero while shutting down after it, which does not void the figures.
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"started"')]
    if not lines:
        print(f"  {script.stem}: failed (exit {done.returncode}): {done.stderr[-1500:].strip()}")
        return
    figures = json.loads(lines[-1])
    samples.in_run.append(float(figures["in_run_s"]))
    samples.process.append(float(figures["first_end"]) - spawned)
    samples.imports.append(float(figures["imported"]) - float(figures["started"]))


_SERVO_IMPORT = "import time; t = time.perf_counter(); import servo; print(time.perf_counter() - t)"


class ServoSide:
    """Servo in this interpreter: each workload's definitions loaded and run once first."""

    def __init__(self, workloads: Sequence[str], work: Path) -> None:
        from benchmarks._inrun import checked_run
        from benchmarks.workloads import write_workload
        from servo.sdk.definitions import Definitions
        from servo.sdk.loader import load_definitions

        self._work = work
        self._loaded: dict[str, tuple[Definitions, dict[str, int]]] = {}
        for name in workloads:
            path, values = write_workload(name, work)
            defs = load_definitions(str(path))
            self._loaded[name] = (defs, values)
            # The first run pays the process's one-time costs, as the peers' first does.
            checked_run(self._store(name), defs, values, concurrency=CONCURRENCY)

    def _store(self, name: str) -> LocalObjectStore:
        from servo.storage.local import LocalObjectStore

        home = Path(tempfile.mkdtemp(dir=self._work, prefix=f"servo-{name}-"))
        return LocalObjectStore(home, fsync=False)

    def run(self, name: str, samples: Samples) -> None:
        """One round: an in-run sample here, then ``servo materialize`` in a fresh process."""
        from benchmarks._inrun import checked_run
        from benchmarks.bench_embedded import _whole_process

        defs, values = self._loaded[name]
        run = checked_run(self._store(name), defs, values, concurrency=CONCURRENCY)
        samples.in_run.append(run.in_run_s)
        samples.process.append(_whole_process(name, self._work)[0])
        imported = subprocess.run(
            [sys.executable, "-c", _SERVO_IMPORT], capture_output=True, text=True, check=True
        )
        samples.imports.append(float(imported.stdout))


# -------------------------------------------------------------------- report
def _timing(name: str, samples: list[float]) -> Timing:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return Timing(name, statistics.median(ordered), p90, len(ordered))


def ratio_line(name: str, servo: float, peer: float, target: float | None) -> str:
    """``name  0.0123 x  (81.3x faster)  target <= 0.02: ok``."""
    ratio = servo / peer
    verdict = ""
    if target is not None:
        verdict = f"  target <= {target}: " + ("ok" if ratio <= target else "MISSED")
    speed = f"{1 / ratio:,.1f}x faster" if ratio <= 1 else f"{ratio:,.1f}x slower"
    return f"{name:<40} {ratio:9.4f} x  ({speed}){verdict}"


def _report(results: dict[tuple[str, str], Samples], workloads: Sequence[str]) -> None:
    print("-- medians over the rounds")
    for workload in workloads:
        for kind in ("in_run", "process", "imports"):
            label = {"in_run": "in-run", "process": "whole-process", "imports": "import"}[kind]
            for tool in TOOLS:
                found = getattr(results[tool, workload], kind)
                if found:
                    report(_timing(f"{workload} {tool} {label}", found))
    print("-- Servo / peer (medians of this invocation)")
    for workload in workloads:
        servo = results["servo", workload]
        for peer in PEERS:
            other = results[peer, workload]
            for kind, label in (("in_run", "in-run"), ("process", "whole-process")):
                mine, theirs = getattr(servo, kind), getattr(other, kind)
                if not mine or not theirs:
                    print(f"{workload} {label} servo/{peer}: no figures")
                    continue
                target = RATIO_TARGET if kind == "in_run" and workload in TARGETED else None
                name = f"{workload} {label} servo/{peer}"
                print(ratio_line(name, statistics.median(mine), statistics.median(theirs), target))


def run(args: PeerArgs) -> None:
    """Install the peers if needed, run the rounds, print the medians and ratios."""
    print("== peers: Servo, Dagster and Prefect on the same workloads (issue 12) ==")
    base = Path(os.environ.get("SERVO_BENCH_DIR", ".bench")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    pythons = {tool: ensure_venv(tool, base) for tool in PEERS}
    results = {(tool, w): Samples() for tool in TOOLS for w in args.workloads}
    with tempfile.TemporaryDirectory(dir=base, prefix="peers-") as tmp:
        work = Path(tmp)
        scripts: dict[tuple[str, str], Path] = {}
        for workload in args.workloads:
            graph = nodes(workload)
            for tool, source in (
                ("dagster", dagster_program(workload, graph)),
                ("prefect", prefect_program(workload, graph, CONCURRENCY)),
            ):
                scripts[tool, workload] = work / f"{tool}_{workload.lower()}.py"
                scripts[tool, workload].write_text(source, encoding="utf-8")
        servo = ServoSide(args.workloads, work)
        for index in range(args.rounds):
            for workload in args.workloads:
                for tool in round_order(index):
                    started = time.perf_counter()
                    samples = results[tool, workload]
                    if tool == "servo":
                        servo.run(workload, samples)
                    else:
                        _run_peer(pythons[tool], scripts[tool, workload], work, samples)
                    took = time.perf_counter() - started
                    print(f"  round {index + 1} {workload} {tool}: {took:.1f} s", flush=True)
        _report(results, args.workloads)
    print(
        json.dumps(
            {"rounds": args.rounds, "workloads": list(args.workloads), "concurrency": CONCURRENCY}
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    run(parse_args(argv or ()))


if __name__ == "__main__":
    main(sys.argv[1:])
