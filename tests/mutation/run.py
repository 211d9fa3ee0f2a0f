"""Apply each targeted mutant to a copy of the code and run the tests that must kill it.

Usage::

    python -m tests.mutation              # every mutant
    python -m tests.mutation NAME ...     # some of them
    python -m tests.mutation --list       # names and what each stands for

For each mutant: copy ``src/``, ``tests/`` and ``pyproject.toml`` to a temporary
directory (the working tree is never edited), replace the mutant's snippet (it must
occur exactly once, else the mutant is reported as ``NOT APPLIED``), check that the
module still compiles, then run the mutant's tests there with ``PYTHONPATH`` pointing
at the copied ``src/``. Before any mutant, the same tests run on the unmutated copy:
if they fail there, no kill can be trusted and the script stops.

Verdicts: ``KILLED`` (a test failed; the failing tests are named), ``SURVIVED``
(every test passed), ``NOT APPLIED`` (the snippet is gone or ambiguous: update the
mutant), ``ERROR`` (collection error, timeout or invalid mutant). Exit status 0 only
when every mutant was killed.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
#: Longest a mutant's tests may run (a mutant that hangs the code is an error).
TIMEOUT_S = 240
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to one mutant."""

    mutant: str
    outcome: str
    detail: str
    seconds: float


def _copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / "src", target / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", target / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


def _apply(mutant: Mutant, src: Path) -> str | None:
    """Patch the copy; None when applied, else why the patch does not apply."""
    module = src / mutant.path
    if not module.is_file():
        return f"patch does not apply: {mutant.path} does not exist"
    text = module.read_text(encoding="utf-8")
    found = text.count(mutant.old)
    if found != 1:
        where = "is not" if found == 0 else f"occurs {found} times"
        return f"patch does not apply: the snippet {where} in {mutant.path}"
    module.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        py_compile.compile(str(module), doraise=True)
    except py_compile.PyCompileError as exc:
        return f"invalid mutant: {exc.msg.strip()}"
    return None


def _pytest(copy: Path, targets: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)  # explore examples as locally; the copy's .hypothesis is thrown away
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-o", f"timeout={TIMEOUT_S}", "-rfE", *targets]  # fmt: skip
    return subprocess.run(
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 30,
        check=False,
    )  # fmt: skip


def _check_imports_copy(copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    out = subprocess.run(
        [sys.executable, "-c", "import servo; print(servo.__file__)"],
        cwd=copy, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(out).is_relative_to(copy):
        raise SystemExit(f"PYTHONPATH does not win: servo imports from {out}, not the copy")


def run_one(mutant: Mutant | None, targets: tuple[str, ...]) -> Verdict:
    """Run `targets` against a copy with `mutant` applied (None: the unmutated baseline)."""
    name = "(baseline)" if mutant is None else mutant.name
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="servo-mutant-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        if mutant is not None and (problem := _apply(mutant, copy / "src")) is not None:
            outcome = "NOT APPLIED" if problem.startswith("patch") else "ERROR"
            return Verdict(name, outcome, problem, time.monotonic() - started)
        if mutant is None:
            _check_imports_copy(copy)
        try:
            done = _pytest(copy, targets)
        except subprocess.TimeoutExpired:
            return Verdict(
                name, "ERROR", f"tests ran over {TIMEOUT_S}s", time.monotonic() - started
            )
        seconds = time.monotonic() - started
        failed = sorted(set(_FAILED.findall(done.stdout)))
        if done.returncode == 0:
            return Verdict(name, "SURVIVED" if mutant else "PASSED", "", seconds)
        if done.returncode == 1 and failed:
            return Verdict(name, "KILLED", ", ".join(_short(f) for f in failed), seconds)
        tail = " | ".join(
            done.stdout.strip().splitlines()[-3:] + done.stderr.strip().splitlines()[-2:]
        )
        return Verdict(name, "ERROR", f"pytest exit {done.returncode}: {tail}", seconds)


def _check_patches(mutants: list[Mutant]) -> int:
    """Apply each patch to its own fresh copy of ``src/`` and report, running no test."""
    broken = 0
    for mutant in mutants:
        with tempfile.TemporaryDirectory(prefix="servo-mutant-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
            problem = _apply(mutant, src)
        broken += problem is not None
        print(f"{mutant.name:40} {'applies' if problem is None else problem}")
    return 1 if broken else 0


def _short(node: str) -> str:
    return node.removeprefix("tests/unit/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--check", action="store_true", help="only check that every patch applies (no tests)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:40} {m.path:36} {m.why}")
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}; see --list")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.check:
        return _check_patches(chosen)
    every_target = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    baseline = run_one(None, every_target)
    print(f"{'(baseline)':40} {baseline.outcome:12} {baseline.seconds:5.1f}s {baseline.detail}")
    if baseline.outcome != "PASSED":
        print("the targeted tests fail without any mutant: fix them first", file=sys.stderr)
        return 2
    verdicts = []
    for mutant in chosen:
        verdict = run_one(mutant, mutant.tests)
        verdicts.append(verdict)
        print(f"{verdict.mutant:40} {verdict.outcome:12} {verdict.seconds:5.1f}s {verdict.detail}",
              flush=True)  # fmt: skip
    killed = sum(v.outcome == "KILLED" for v in verdicts)
    print(f"\n{killed}/{len(verdicts)} mutants killed")
    return 0 if killed == len(verdicts) else 1
