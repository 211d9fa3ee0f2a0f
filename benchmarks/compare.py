"""Old-versus-new benchmark report: ``python -m benchmarks.compare --base REV``.

A change must not make the benchmarks slower, and two separate runs on a shared
machine differ by more than the 10 % that matters. So both sides run in one
session, interleaved, each side first in every other round (base, head, head,
base, ...: what one side leaves for the file system to finish, such as deleted
files being discarded, must not always fall on the same side), each benchmark in a fresh
process with its own tree on ``PYTHONPATH`` and as working directory: each side runs
its own code and its own benchmark files. The base revision (and the head, unless it
is the working tree) is checked out into a temporary ``git worktree``, removed at the
end.

The report parses the lines the benchmarks already print (``name  median 1.23 ms``,
``name  12,345 events/s``, ``name  149.2 MB``), so any revision's benchmarks can be
the base. Each metric's value is the median over the rounds; the ratio is head's
cost over base's (for rates base over head), so above 1 means head is worse, and
ratios above 1.10 are flagged. It is a report, not a test: the exit code is 0 unless
the arguments are wrong.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BENCHES = ("bench_embedded", "bench_engine", "bench_timers")
#: A head/base cost ratio above this is flagged.
THRESHOLD = 1.10
#: The worktree (uncommitted edits included) rather than a revision.
WORKTREE = "worktree"
#: Environment switch a benchmark may honour to run a smaller version of itself; set
#: only when both sides' benchmark file mentions it, so both run the same sizes.
QUICK_ENV = "SERVO_BENCH_QUICK"
#: Samples per measurement that ``--quick`` asks of benchmarks honouring it.
QUICK_REPEAT = "2"

_UNITS = {"µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_MEDIAN = re.compile(r"^(?P<name>\S.*?)\s+median\s+(?P<value>[\d.,]+)\s*(?P<unit>µs|us|ms|s)\b")
_RATE = re.compile(r"^(?P<name>\S.*?)\s+(?P<value>[\d.,]+) events/s")
_MEGABYTES = re.compile(r"^(?P<name>\S.*?)\s+(?P<value>[\d.,]+) MB\b")


@dataclass(frozen=True, slots=True)
class Metric:
    """One number a benchmark printed.

    Attributes:
        name: the text the benchmark printed before the number.
        value: seconds, events per second or megabytes (see `unit`).
        unit: ``"s"``, ``"events/s"`` or ``"MB"``.
    """

    name: str
    value: float
    unit: str

    @property
    def higher_is_better(self) -> bool:
        """Rates improve upwards; times and sizes downwards."""
        return self.unit == "events/s"


def parse_metrics(text: str) -> dict[str, Metric]:
    """The metrics in a benchmark's output, by name; other lines are ignored."""
    found: dict[str, Metric] = {}
    for line in map(str.rstrip, text.splitlines()):
        if match := _MEDIAN.match(line):
            unit = match["unit"]
            metric = Metric(match["name"], _number(match["value"]) * _UNITS[unit], "s")
        elif match := _RATE.match(line):
            metric = Metric(match["name"], _number(match["value"]), "events/s")
        elif match := _MEGABYTES.match(line):
            metric = Metric(match["name"], _number(match["value"]), "MB")
        else:
            continue
        found[metric.name] = metric
    return found


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def cost_ratio(base: Metric, head: Metric) -> float:
    """Head's cost over base's: above 1 means head is worse, whichever way `unit` points."""
    worse, better = (base.value, head.value) if base.higher_is_better else (head.value, base.value)
    if better == 0:
        return 1.0 if worse == 0 else math.inf
    return worse / better


@dataclass(slots=True)
class Samples:
    """What one side printed for one benchmark over the rounds.

    Attributes:
        values: per metric name, one value per round that printed it.
        units: per metric name, its unit.
        failures: one line per failed run (exit code and the end of stderr).
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, metrics: dict[str, Metric]) -> None:
        for metric in metrics.values():
            self.values.setdefault(metric.name, []).append(metric.value)
            self.units[metric.name] = metric.unit

    def median(self, name: str) -> Metric | None:
        values = self.values.get(name)
        if not values:
            return None
        return Metric(name, statistics.median(values), self.units[name])


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report.

    Attributes:
        bench: the benchmark module.
        metric: the metric's name.
        base: base's median over the rounds (None: base never printed it).
        head: head's median over the rounds (None: head never printed it).
    """

    bench: str
    metric: str
    base: Metric | None
    head: Metric | None

    @property
    def ratio(self) -> float | None:
        if self.base is None or self.head is None:
            return None
        return cost_ratio(self.base, self.head)

    @property
    def flagged(self) -> bool:
        return self.ratio is not None and self.ratio > THRESHOLD


def rows_of(bench: str, base: Samples, head: Samples) -> list[Row]:
    """One row per metric either side printed, in the order the benchmark prints them."""
    names = list(base.values) + [n for n in head.values if n not in base.values]
    return [Row(bench, name, base.median(name), head.median(name)) for name in names]


def _show(metric: Metric | None) -> str:
    if metric is None:
        return "-"
    if metric.unit == "events/s":
        return f"{metric.value:,.0f}/s"
    if metric.unit == "MB":
        return f"{metric.value:.1f} MB"
    seconds = metric.value
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def format_table(rows: Sequence[Row]) -> str:
    """The report: benchmark, metric, base and head medians, ratio, flag."""
    header = ("benchmark", "metric", "base", "head", "ratio", "")
    lines = [header]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        flag = f"WORSE > {THRESHOLD:.2f}" if row.flagged else ""
        lines.append((row.bench, row.metric, _show(row.base), _show(row.head), ratio, flag))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4}
    out = []
    for line in lines:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


# ---------------------------------------------------------------------- running
def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@contextmanager
def checkout(repo: Path, rev: str, label: str) -> Iterator[tuple[Path, str]]:
    """`rev` as a tree and its description: the worktree itself, or a temporary one."""
    if rev == WORKTREE:
        dirty = " (with uncommitted changes)" if _git(repo, "status", "--porcelain") else ""
        yield repo, f"worktree at {_git(repo, 'rev-parse', '--short', 'HEAD')}{dirty}"
        return
    sha = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(tempfile.gettempdir()) / f"servo-bench-{label}-{sha[:12]}-{os.getpid()}"
    _git(repo, "worktree", "add", "--detach", str(path), sha)
    try:
        yield path, f"{rev} = {sha[:12]} {_git(repo, 'log', '-1', '--format=%s', sha)}"
    finally:  # not `_git`: a failed removal must not hide the error that got here
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )


def _supports_quick(tree: Path, bench: str) -> bool:
    source = tree / "benchmarks" / f"{bench}.py"
    return source.is_file() and QUICK_ENV in source.read_text(encoding="utf-8")


def run_bench(tree: Path, bench: str, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Run ``python -m benchmarks.{bench}`` in `tree`; returns (stdout, failure or "")."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(tree)])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{bench}"],
            cwd=tree,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return out, f"timed out after {timeout:.0f} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        return done.stdout, f"exit {done.returncode}: {tail}"
    return done.stdout, ""


def compare(args: argparse.Namespace) -> list[Row]:
    """Run the rounds and return the report's rows (progress goes to stderr)."""
    repo = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel"))
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    results = {(b, side): Samples() for b in benches for side in ("base", "head")}
    with ExitStack() as stack:
        base, base_about = stack.enter_context(checkout(repo, args.base, "base"))
        head, head_about = stack.enter_context(checkout(repo, args.head, "head"))
        # Both sides write their files in one folder, so both pay the same file system,
        # and what a killed benchmark leaves behind goes with the folder.
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="servo-bench-")))
        print(f"base: {base_about}\nhead: {head_about}", file=sys.stderr)
        env = {**os.environ, "SERVO_BENCH_DIR": str(work), "TMPDIR": str(work)}
        if args.quick:
            env.setdefault("SERVO_BENCH_REPEAT", QUICK_REPEAT)
        for round_ in range(1, args.rounds + 1):
            for bench in benches:
                bench_env = dict(env)
                if args.quick and all(_supports_quick(t, bench) for t in (base, head)):
                    bench_env[QUICK_ENV] = "1"
                sides = (("base", base), ("head", head))
                for side, tree in sides if round_ % 2 else sides[::-1]:
                    started = time.monotonic()
                    out, failure = run_bench(tree, bench, bench_env, args.timeout)
                    samples = results[(bench, side)]
                    samples.add(parse_metrics(out))
                    if failure:
                        samples.failures.append(f"round {round_}: {failure}")
                    took = time.monotonic() - started
                    status = f"FAILED ({failure})" if failure else "ok"
                    print(
                        f"round {round_}/{args.rounds} {side} {bench}: {took:.0f} s {status}",
                        file=sys.stderr,
                    )
        print(f"base: {base_about}\nhead: {head_about}")
    rows = [row for b in benches for row in rows_of(b, results[(b, "base")], results[(b, "head")])]
    for (bench, side), samples in results.items():
        for failure in samples.failures:
            print(f"{bench} {side} {failure}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", default=WORKTREE, help=f"git revision or {WORKTREE!r} (default)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument(
        "--bench",
        default=",".join(DEFAULT_BENCHES),
        help="comma-separated benchmark modules (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"SERVO_BENCH_REPEAT={QUICK_REPEAT} and {QUICK_ENV}=1 where both "
        "sides honour it: a smaller, noisier run",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark run")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    # Stopped with SIGTERM (or by a shell that ignores SIGINT in background jobs): unwind,
    # so the running benchmark is killed and the temporary worktrees are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows = compare(args)
    print(format_table(rows))
    flagged = sum(row.flagged for row in rows)
    print(
        f"{flagged} of {len(rows)} metrics worse than x{THRESHOLD:.2f} "
        "(ratio = head cost / base cost; above 1 is worse)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
