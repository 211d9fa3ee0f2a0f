"""The issue's reference workloads, and the scaled graphs, generated as definitions files.

W1 chain-200:   a_0 = 1, a_i = a_{i-1} + 1                       (a_199 == 200)
W2 wide-1000:   root = 1, c_i = root + i for i < 1000             (c_i == 1 + i)
W3 layered-1000: 10 layers x 100; layer 0 node j = j + 1; a node of layer k > 0 sums
                3 distinct parents of layer k-1 drawn with one random.Random(42)
                (`sample(range(100), 3)`) in (layer, index) order
W4 sleep-64:    64 independent assets sleeping 0.5 s, each returning 0 (run at
                concurrency 16)

Each workload is a list of `Node`s (value = constant + the sum of the parents'
values), from which the Servo definitions here and the Dagster and Prefect programs of
`benchmarks.peers` are generated: every tool runs the same graph and computes the
same numbers, and `expected(name)` computes them independently of any of them, so a
benchmark can check what it ran.

`write_scaled` writes wide-N and chain-N (the same shapes as W2 and W1, any N) as a
module that builds its assets in a loop: a module with 100,000 literal functions
takes Python itself 5 s and 700 MB to compile, which would hide the run's own peak
memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: The scaled shapes: root + N-1 children, or a chain of N.
Shape = Literal["wide", "chain"]


@dataclass(frozen=True, slots=True)
class Node:
    """One asset of a workload: its value is `constant` + the sum of its parents'.

    Attributes:
        name: the asset (and function) name.
        parents: upstream assets, in parameter order.
        constant: added to the parents' sum.
        sleep_s: seconds the asset sleeps before returning (W4).
    """

    name: str
    parents: tuple[str, ...]
    constant: int
    sleep_s: float = 0.0

    def expression(self) -> str:
        """The Python expression of its value, over parameters named after the parents
        (``a_0 + 1``, ``root + 7``, ``n_0_3 + n_0_9 + n_0_1``, ``5``)."""
        terms = list(self.parents)
        if self.constant or not terms:
            terms.append(str(self.constant))
        return " + ".join(terms)


def _w1() -> list[Node]:
    return [Node("a_0", (), 1)] + [Node(f"a_{i}", (f"a_{i - 1}",), 1) for i in range(1, 200)]


def _w2() -> list[Node]:
    return [Node("root", (), 1)] + [Node(f"c_{i}", ("root",), i) for i in range(1000)]


def _w3() -> list[Node]:
    rng = random.Random(42)
    nodes = [Node(f"n_0_{j}", (), j + 1) for j in range(100)]
    for k in range(1, 10):
        for i in range(100):
            parents = tuple(f"n_{k - 1}_{p}" for p in rng.sample(range(100), 3))
            nodes.append(Node(f"n_{k}_{i}", parents, 0))
    return nodes


def _w4() -> list[Node]:
    return [Node(f"s_{i}", (), 0, sleep_s=0.5) for i in range(64)]


WORKLOADS = {"W1": _w1, "W2": _w2, "W3": _w3, "W4": _w4}


def nodes(name: str) -> list[Node]:
    """Workload `name`'s assets, each after its parents."""
    return WORKLOADS[name]()


def values_of(graph: list[Node]) -> dict[str, int]:
    """Every node's value, computed here (not by the tool under test)."""
    values: dict[str, int] = {}
    for node in graph:
        values[node.name] = node.constant + sum(values[p] for p in node.parents)
    return values


def expected(name: str) -> dict[str, int]:
    """The value of every asset of workload `name`."""
    return values_of(nodes(name))


def servo_source(graph: list[Node]) -> str:
    """A Servo definitions module with one ``@asset`` function per node."""
    sleeps = any(node.sleep_s for node in graph)
    lines = (["import time", ""] if sleeps else []) + ["from servo import asset", ""]
    for node in graph:
        lines += ["@asset", f"def {node.name}({', '.join(node.parents)}):"]
        if node.sleep_s:
            lines.append(f"    time.sleep({node.sleep_s})")
        lines += [f"    return {node.expression()}", ""]
    return "\n".join(lines)


def write_workload(name: str, directory: Path) -> tuple[Path, dict[str, int]]:
    """Write workload `name` as `{directory}/{name}_defs.py`; returns (path, expected values)."""
    graph = nodes(name)
    path = directory / f"{name.lower()}_defs.py"
    path.write_text(servo_source(graph) + "\n", encoding="utf-8")
    return path, values_of(graph)


_WIDE = '''\
"""wide-{n}: root = 1, c_i = root + i for i < {children}."""

from servo import Definitions, asset


def _root():
    return 1


def _child(i):
    def child(root):
        return root + i

    return asset(name=f"c_{{i}}")(child)


definitions = Definitions(
    assets=[asset(name="root")(_root), *(_child(i) for i in range({children}))]
)
'''

_CHAIN = '''\
"""chain-{n}: a_0 = 1, a_i = a_{{i-1}} + 1."""

from servo import Definitions, asset


def _first():
    return 1


def _link(i):
    upstream = f"a_{{i - 1}}"

    def link(**values):
        return values[upstream] + 1

    return asset(name=f"a_{{i}}", dependencies=[upstream])(link)


definitions = Definitions(
    assets=[asset(name="a_0")(_first), *(_link(i) for i in range(1, {n}))]
)
'''


def scaled_expected(shape: Shape, n: int) -> dict[str, int]:
    """The values of wide-`n` (root + `n`-1 children) or chain-`n`."""
    if n < 2:
        raise ValueError(f"{shape}-{n}: a graph needs at least 2 assets")
    if shape == "wide":
        return {"root": 1} | {f"c_{i}": 1 + i for i in range(n - 1)}
    return {f"a_{i}": i + 1 for i in range(n)}


def write_scaled(shape: Shape, n: int, directory: Path) -> tuple[Path, dict[str, int]]:
    """Write wide-`n` or chain-`n` as `{directory}/{shape}_{n}_defs.py`; returns
    (path, expected values)."""
    values = scaled_expected(shape, n)
    template = _WIDE if shape == "wide" else _CHAIN
    path = directory / f"{shape}_{n}_defs.py"
    path.write_text(template.format(n=n, children=n - 1), encoding="utf-8")
    return path, values
