"""Cost against graph size and against history, and the cold start, with the issue's ratios.

``python -m benchmarks.bench_scale [--max-n N] [--history-runs R] [--repeat K] [--quick]``
(also run, with its defaults, by ``python -m benchmarks.run``). See benchmarks/README.md.

- **Graph size**: wide-N (root + N-1 children) and chain-N for N = 100, 1,000, 10,000,
  100,000: in-run ms per task (`start_run` to the end of `wait`, definitions loaded
  first and timed apart) and the peak RSS of the process. Each sample runs in a fresh
  subprocess, so a peak RSS is that size's own and no size inherits another's heap;
  it first runs a graph of 10 assets, so one-time costs of the process (lazy
  imports) are not counted per task.
- **History**: wide-1000 (W2) run R times on one home, a new `EmbeddedRunner` per run
  as each ``servo materialize`` makes one: the in-run time of run 1, 10, 100 (1,000).
  Run 1's figure is the median of the first run on K fresh homes; run k's is the
  median of runs k-K+1..k of the one home (a run cannot be repeated on the same
  history, its neighbours can). A 10-asset run on another home comes first.
- **Cold start**: ``servo materialize`` of W2 in a fresh process (bench_embedded's
  helper), and ``servo --help``.

Every figure is a median of K samples (``--repeat``, default 3; ``--repeat-large``,
default 1, at N = 100,000), every value of every run is checked, and the ratios the
targets name are computed from figures of the same invocation. Homes live under
``SERVO_BENCH_DIR`` (default ``.bench``) and are deleted at the end, not between
runs (deleting files while a run is timed slows its writes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from benchmarks._timing import Timing, report
from benchmarks.workloads import Shape, scaled_expected, write_scaled, write_workload

SIZES = (100, 1_000, 10_000, 100_000)
#: Sizes from this one up take `repeat_large` samples.
LARGE = 100_000
#: Size of the warm-up run each graph-size sample makes first.
WARM_N = 10
#: The per-task ratios compare each size against this one.
BASE_N = 1_000
HISTORY_POINTS = (1, 10, 100, 1_000)
QUICK_MAX_N = 10_000
QUICK_HISTORY_RUNS = 20
SHAPES: tuple[Shape, ...] = ("wide", "chain")

#: Targets of the issue.
PER_TASK_RATIO_TARGET = 1.3
CHAIN_1000_TARGET_S = 1.0
PEAK_RSS_TARGET_MB = 1024.0
HISTORY_RATIO_TARGET = 1.2
COLD_W2_TARGET_S = 1.5
HELP_TARGET_S = 0.15


@dataclass(frozen=True, slots=True)
class ScaleArgs:
    """What one invocation measures.

    Attributes:
        max_n: the largest graph size run.
        history_runs: runs on the one home of the history curve (0: no curve).
        repeat: samples per figure.
        repeat_large: samples per figure at N >= `LARGE`.
        timeout_s: a graph-size sample running longer is stopped and reported missing.
        cold: whether the cold-start figures are measured.
    """

    max_n: int = SIZES[-1]
    history_runs: int = 100
    repeat: int = 3
    repeat_large: int = 1
    timeout_s: float = 900.0
    cold: bool = True

    def sizes(self) -> list[int]:
        """The graph sizes this invocation runs, smallest first."""
        return [n for n in SIZES if n <= self.max_n]

    def samples(self, n: int) -> int:
        """Samples per figure at size `n`."""
        return self.repeat_large if n >= LARGE else self.repeat


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale",
        description="Servo's cost against graph size and history, and its cold start.",
    )
    default_repeat = int(os.environ.get("SERVO_BENCH_REPEAT", "3"))
    parser.add_argument(
        "--max-n", type=_positive, default=SIZES[-1], help="largest graph size (default 100000)"
    )
    parser.add_argument(
        "--history-runs",
        type=int,
        default=100,
        help="runs on one home for the history curve (default 100; 0: none)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=default_repeat,
        help="samples per figure (default 3, or SERVO_BENCH_REPEAT)",
    )
    parser.add_argument(
        "--repeat-large",
        type=_positive,
        default=1,
        help="samples per figure at N = 100000 (default 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one graph-size sample may take (default 900)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start figures")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"N up to {QUICK_MAX_N:,} and {QUICK_HISTORY_RUNS} history runs",
    )
    # Internal: one sample in this (fresh) process; see `_sample` and `_history`.
    parser.add_argument("--sample", nargs=3, metavar=("SHAPE", "N", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--history", nargs=3, metavar=("RUNS", "FRESH", "DIR"), help=argparse.SUPPRESS
    )
    return parser


def parse_args(argv: Sequence[str]) -> ScaleArgs:
    """The invocation's settings; ``--quick`` (or ``SERVO_BENCH_QUICK=1``) caps N and
    the history at their quick values."""
    ns = _parser().parse_args(list(argv))
    quick = ns.quick or os.environ.get("SERVO_BENCH_QUICK") == "1"
    history_runs = max(0, ns.history_runs)
    return ScaleArgs(
        max_n=min(ns.max_n, QUICK_MAX_N) if quick else ns.max_n,
        history_runs=min(history_runs, QUICK_HISTORY_RUNS) if quick else history_runs,
        repeat=ns.repeat,
        repeat_large=ns.repeat_large,
        timeout_s=ns.timeout,
        cold=not ns.no_cold,
    )


# ------------------------------------------------------------- child processes
def _emit(figures: dict[str, Any]) -> None:
    """The child's result: one JSON line, the last on stdout."""
    print(json.dumps(figures), flush=True)


def _sample(shape: Shape, n: int, work: Path) -> None:
    """One graph-size sample, in this fresh process: load, run, check, report."""
    from benchmarks._inrun import checked_run, peak_rss_kib
    from servo.sdk.loader import load_definitions
    from servo.storage.local import LocalObjectStore

    # A first tiny run pays the process's one-time costs (lazy imports, first use of
    # the store), which would otherwise count as the per-task cost of small graphs.
    warm = load_definitions(str(work / f"{shape}_{WARM_N}_defs.py"))
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-warm-"))
    checked_run(LocalObjectStore(home, fsync=False), warm, scaled_expected(shape, WARM_N))
    start = time.perf_counter()
    defs = load_definitions(str(work / f"{shape}_{n}_defs.py"))
    load_s = time.perf_counter() - start
    loaded_rss = peak_rss_kib()
    home = Path(tempfile.mkdtemp(dir=work, prefix=f"home-{shape}-{n}-"))
    run = checked_run(LocalObjectStore(home, fsync=False), defs, scaled_expected(shape, n))
    _emit(
        {
            "load_s": load_s,
            "in_run_s": run.in_run_s,
            "tasks": run.tasks,
            "rss_kib": run.peak_rss_kib,
            "loaded_rss_kib": loaded_rss,
        }
    )


def _footprint(home: Path) -> tuple[int, int]:
    """Bytes and files under `home`."""
    size = files = 0
    for folder, _, names in os.walk(home):
        for name in names:
            files += 1
            size += (Path(folder) / name).stat().st_size
    return size, files


def _history(runs: int, fresh: int, work: Path) -> None:
    """The history curve, in this fresh process: `fresh` first runs on new homes,
    then `runs` runs on one home; progress on stderr every 10 runs."""
    from benchmarks._inrun import checked_run, peak_rss_kib
    from benchmarks.workloads import expected
    from servo.sdk.loader import load_definitions
    from servo.storage.local import LocalObjectStore

    # As in `_sample`: the process's one-time costs must not fall on run 1.
    warm = load_definitions(str(work / f"wide_{WARM_N}_defs.py"))
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-warm-"))
    checked_run(LocalObjectStore(home, fsync=False), warm, scaled_expected("wide", WARM_N))
    defs = load_definitions(str(work / "w2_defs.py"))
    values = expected("W2")
    firsts = []
    for _ in range(fresh):
        home = Path(tempfile.mkdtemp(dir=work, prefix="home-first-"))
        firsts.append(checked_run(LocalObjectStore(home, fsync=False), defs, values).in_run_s)
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-history-"))
    curve = []
    for i in range(1, runs + 1):
        store = LocalObjectStore(home, fsync=False)
        curve.append(checked_run(store, defs, values).in_run_s)
        if i % 10 == 0:
            print(f"  history: run {i}/{runs}: {curve[-1]:.3f} s", file=sys.stderr, flush=True)
    size, files = _footprint(home)
    _emit(
        {
            "firsts": firsts,
            "curve": curve,
            "home_bytes": size,
            "home_files": files,
            "rss_kib": peak_rss_kib(),
        }
    )


def _child(args: list[str], timeout_s: float | None, *, stream_stderr: bool = False) -> Any:
    """Run this module with `args` in a fresh interpreter; its JSON result, or None when
    it failed or timed out (the reason printed)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
    command = [sys.executable, "-m", "benchmarks.bench_scale", *args]
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=None if stream_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"  {' '.join(args[:3])}: no result, stopped after {timeout_s:.0f} s")
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or "")[-2000:] + done.stdout[-1000:]
        print(f"  {' '.join(args[:3])}: failed (exit {done.returncode}): {tail.strip()}")
        return None
    return json.loads(lines[-1])


# ---------------------------------------------------------------------- figures
def _median_timing(name: str, samples: list[float]) -> Timing:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return Timing(name, statistics.median(ordered), p90, len(ordered))


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _ratio_line(name: str, ratio: float, target: float) -> None:
    print(f"{name:<40} {ratio:9.2f} x   target <= {target}: {_verdict(ratio <= target)}")


def _mb_line(name: str, kib: float, target_mb: float | None = None) -> None:
    mb = kib / 1024
    verdict = (
        "" if target_mb is None else f"  target < {target_mb:.0f} MB: {_verdict(mb < target_mb)}"
    )
    print(f"{name:<40} {mb:9.1f} MB{verdict}")


@dataclass(frozen=True, slots=True)
class SizeFigures:
    """Medians of one shape and size.

    Attributes:
        per_task_s: in-run seconds per task.
        in_run_s: in-run seconds.
        rss_kib: peak RSS of the sample's process.
    """

    per_task_s: float
    in_run_s: float
    rss_kib: float


def _measure_size(shape: Shape, n: int, work: Path, args: ScaleArgs) -> SizeFigures | None:
    results = []
    for _ in range(args.samples(n)):
        found = _child(["--sample", shape, str(n), str(work)], args.timeout_s)
        if found is None:
            return None
        results.append(found)
    name = f"{shape}-{n}"
    in_run = [float(r["in_run_s"]) for r in results]
    per_task = [t / int(r["tasks"]) for t, r in zip(in_run, results, strict=True)]
    report(_median_timing(f"{name} in-run per task", per_task))
    in_run_timing = _median_timing(f"{name} in-run", in_run)
    report(in_run_timing, CHAIN_1000_TARGET_S if name == "chain-1000" else None)
    report(
        _median_timing(
            f"{name} load definitions (not in-run)", [float(r["load_s"]) for r in results]
        )
    )
    rss = statistics.median(float(r["rss_kib"]) for r in results)
    _mb_line(f"{name} peak RSS", rss, PEAK_RSS_TARGET_MB if n >= LARGE else None)
    loaded = statistics.median(float(r["loaded_rss_kib"]) for r in results)
    _mb_line(f"{name} peak RSS before the run", loaded)
    return SizeFigures(statistics.median(per_task), in_run_timing.median, rss)


def _graph_sizes(work: Path, args: ScaleArgs) -> dict[tuple[Shape, int], SizeFigures]:
    figures: dict[tuple[Shape, int], SizeFigures] = {}
    for n in args.sizes():
        for shape in SHAPES:
            write_scaled(shape, WARM_N, work)
            write_scaled(shape, n, work)
            found = _measure_size(shape, n, work, args)
            if found is not None:
                figures[shape, n] = found
    return figures


def history_points(runs: int) -> list[int]:
    """The runs of the curve printed: 1, 10, 100, 1,000 up to `runs`, and `runs`."""
    points = [k for k in HISTORY_POINTS if k <= runs]
    return points + ([runs] if runs and runs not in points else [])


def _history_curve(work: Path, args: ScaleArgs) -> tuple[float, int, float] | None:
    """(run-1 median, last point, its median) of the curve, printed as they come."""
    write_workload("W2", work)
    write_scaled("wide", WARM_N, work)
    found = _child(
        ["--history", str(args.history_runs), str(args.repeat - 1), str(work)],
        None,
        stream_stderr=True,
    )
    if found is None:
        return None
    curve = cast(list[float], found["curve"])
    firsts = [curve[0], *cast(list[float], found["firsts"])]
    medians = {1: _median_timing("history wide-1000 run 1", firsts)}
    report(medians[1])
    for k in history_points(args.history_runs)[1:]:
        window = curve[max(0, k - args.repeat) : k]
        medians[k] = _median_timing(f"history wide-1000 run {k}", window)
        report(medians[k])
    print(
        f"{'history home after ' + str(len(curve)) + ' runs':<40} "
        f"{found['home_bytes'] / 2**20:9.1f} MB  {found['home_files']:,} files"
    )
    _mb_line("history peak RSS (one process)", float(found["rss_kib"]))
    last = history_points(args.history_runs)[-1]
    return medians[1].median, last, medians[last].median


def _cold(work: Path, args: ScaleArgs) -> None:
    from benchmarks.bench_embedded import _whole_process

    walls = [_whole_process("W2", work)[0] for _ in range(args.repeat)]
    report(_median_timing("W2 servo materialize cold (process)", walls), COLD_W2_TARGET_S)
    servo = shutil.which("servo")
    command = [servo] if servo else [sys.executable, "-m", "servo.cli"]
    helps = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        subprocess.run([*command, "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - start)
    report(_median_timing("servo --help (process)", helps), HELP_TARGET_S)


def _targets(
    sizes: dict[tuple[Shape, int], SizeFigures], history: tuple[float, int, float] | None
) -> None:
    print("-- ratios and targets (figures of this invocation)")
    for shape in SHAPES:
        measured = [n for (s, n) in sizes if s == shape and n > BASE_N]
        if (shape, BASE_N) in sizes and measured:
            top = max(measured)
            ratio = sizes[shape, top].per_task_s / sizes[shape, BASE_N].per_task_s
            _ratio_line(f"{shape} per task N={top:,} / N={BASE_N:,}", ratio, PER_TASK_RATIO_TARGET)
    if ("chain", BASE_N) in sizes:
        chain = sizes["chain", BASE_N].in_run_s
        print(
            f"{'chain-1000 in-run':<40} {chain:9.3f} s   target <= {CHAIN_1000_TARGET_S} s: "
            f"{_verdict(chain <= CHAIN_1000_TARGET_S)}"
        )
    for shape in SHAPES:
        large = [n for (s, n) in sizes if s == shape and n >= LARGE]
        if large:
            _mb_line(
                f"{shape}-{max(large)} peak RSS",
                sizes[shape, max(large)].rss_kib,
                PEAK_RSS_TARGET_MB,
            )
    if history is not None and history[1] > 1:
        first, last, at_last = history
        _ratio_line(f"history run {last} / run 1", at_last / first, HISTORY_RATIO_TARGET)


def run(args: ScaleArgs) -> None:
    """Measure and print everything `args` asks for."""
    print("== scale: cost against graph size and history (issue 12) ==")
    base = Path(os.environ.get("SERVO_BENCH_DIR", ".bench"))
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="scale-") as tmp:
        work = Path(tmp).resolve()
        sizes = _graph_sizes(work, args)
        history = _history_curve(work, args) if args.history_runs > 0 else None
        if args.cold:
            _cold(work, args)
        _targets(sizes, history)
    print(
        json.dumps(
            {
                "repeat": args.repeat,
                "repeat_large": args.repeat_large,
                "max_n": args.max_n,
                "history_runs": args.history_runs,
            }
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point (``benchmarks.run`` calls it without arguments: the defaults)."""
    ns = _parser().parse_args(list(argv or ()))
    if ns.sample is not None:
        shape, n, work = ns.sample
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape!r}")
        _sample(cast(Shape, shape), int(n), Path(work))
    elif ns.history is not None:
        runs, fresh, work = ns.history
        _history(int(runs), int(fresh), Path(work))
    else:
        run(parse_args(argv or ()))


if __name__ == "__main__":
    main(sys.argv[1:])
