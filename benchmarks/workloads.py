"""The issue's reference workloads, generated as definitions files.

W1 chain-200:   a_0 = 0, a_i = a_{i-1} + 1                       (a_199 == 199)
W2 wide-1000:   root = 1, c_i = root + i for i < 1000             (c_i == 1 + i)
W3 layered-1000: 10 layers x 100; layer 0 node j = j + 1; a node of layer k > 0 sums
                3 distinct parents of layer k-1 drawn with one random.Random(42)
                (`sample(range(100), 3)`) in (layer, index) order
W4 sleep-64:    64 independent assets sleeping 0.5 s (run at concurrency 16)

`expected(name)` computes every value independently of Servo, so a benchmark can
check what it ran.
"""

from __future__ import annotations

import random
from pathlib import Path


def _w1() -> tuple[str, dict[str, int]]:
    lines = ["from servo import asset", "", "@asset", "def a_0():", "    return 0", ""]
    values = {"a_0": 0}
    for i in range(1, 200):
        lines += ["@asset", f"def a_{i}(a_{i - 1}):", f"    return a_{i - 1} + 1", ""]
        values[f"a_{i}"] = i
    return "\n".join(lines), values


def _w2() -> tuple[str, dict[str, int]]:
    lines = ["from servo import asset", "", "@asset", "def root():", "    return 1", ""]
    values = {"root": 1}
    for i in range(1000):
        lines += ["@asset", f"def c_{i}(root):", f"    return root + {i}", ""]
        values[f"c_{i}"] = 1 + i
    return "\n".join(lines), values


def _w3() -> tuple[str, dict[str, int]]:
    rng = random.Random(42)
    lines = ["from servo import asset", ""]
    values: dict[str, int] = {}
    for j in range(100):
        lines += ["@asset", f"def n_0_{j}():", f"    return {j + 1}", ""]
        values[f"n_0_{j}"] = j + 1
    for k in range(1, 10):
        for i in range(100):
            parents = [f"n_{k - 1}_{p}" for p in rng.sample(range(100), 3)]
            lines += ["@asset", f"def n_{k}_{i}({', '.join(parents)}):",
                      f"    return {' + '.join(parents)}", ""]  # fmt: skip
            values[f"n_{k}_{i}"] = sum(values[p] for p in parents)
    return "\n".join(lines), values


def _w4() -> tuple[str, dict[str, int]]:
    lines = ["import time", "", "from servo import asset", ""]
    values = {}
    for i in range(64):
        lines += ["@asset", f"def s_{i}():", "    time.sleep(0.5)", f"    return {i}", ""]
        values[f"s_{i}"] = i
    return "\n".join(lines), values


WORKLOADS = {"W1": _w1, "W2": _w2, "W3": _w3, "W4": _w4}


def write_workload(name: str, directory: Path) -> tuple[Path, dict[str, int]]:
    """Write workload `name` as `{directory}/{name}.py`; returns (path, expected values)."""
    source, values = WORKLOADS[name]()
    path = directory / f"{name.lower()}_defs.py"
    path.write_text(source + "\n", encoding="utf-8")
    return path, values
