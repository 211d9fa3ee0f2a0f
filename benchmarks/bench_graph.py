"""Graph, loader and CLI start-up benchmarks: ``python -m benchmarks.bench_graph``.

Targets: upstream depth 5 on 1,000 assets <= 50 µs; downstream full on 1,000
assets <= 1 ms; planning 100,000 assets <= 1 s; loading a 1,000-asset definitions
file <= 0.5 s; ``servo --help`` <= 0.3 s.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._timing import measure
from servo.graph import AssetGraph, DepType
from servo.sdk.loader import load_definitions

Spec = list[tuple[str, list[tuple[str, DepType]]]]


def layered_dag(size: int, seed: int = 7) -> tuple[Spec, list[list[str]]]:
    """A realistic DAG: ~sqrt(size) layers, each asset with 1-3 parents from the
    previous 3 layers; ~80% data edges. Deterministic for a seed."""
    rng = random.Random(seed)
    width = max(10, round(math.sqrt(size)))
    layers: list[list[str]] = []
    spec: Spec = []
    kinds: list[DepType] = ["data"] * 8 + ["metadata", "control"]
    pool: list[str] = []
    for index in range(size):
        layer_no = index // width
        if layer_no == len(layers):
            layers.append([])
            pool = [n for layer in layers[max(0, layer_no - 3) : layer_no] for n in layer]
        name = f"asset_{index:06d}"
        deps: list[tuple[str, DepType]] = []
        if layer_no > 0:
            for parent in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
                deps.append((parent, rng.choice(kinds)))
        layers[layer_no].append(name)
        spec.append((name, deps))
    return spec, layers


def bench_queries(size: int) -> None:
    spec, layers = layered_dag(size)
    graph = AssetGraph(spec)
    leaf, root = layers[-1][-1], layers[0][0]
    fast = size <= 10_000
    measure(
        f"upstream_query_depth_5[{size}]",
        lambda: graph.upstream(leaf, depth=5),
        repeat=200 if fast else 30,
        number=20 if fast else 1,
        target=50e-6 if size == 1_000 else None,
    )
    measure(
        f"downstream_query_full[{size}]",
        lambda: graph.downstream(root),
        repeat=200 if fast else 10,
        number=5 if fast else 1,
        target=1e-3 if size == 1_000 else None,
    )


def bench_plan(size: int) -> None:
    spec, _ = layered_dag(size)
    measure(
        f"plan[{size}] (build + toposort + levels)",
        lambda: AssetGraph(spec).plan(),
        repeat=5,
        target=1.0 if size == 100_000 else None,
    )


def write_definitions(folder: Path, size: int) -> Path:
    """A definitions file of `size` assets, dependencies inferred from parameters."""
    spec, _ = layered_dag(size, seed=11)
    lines = ["from servo import asset", ""]
    for name, deps in spec:
        params = ", ".join(dep for dep, _ in deps)
        lines += [
            "",
            "@asset",
            f"def {name}({params}):",
            f'    """Asset {name}."""',
            "    return 1",
        ]
    path = folder / "definitions.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bench_load(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_definitions(Path(tmp), size)
        measure(
            f"load_definitions[{size}] in process",
            lambda: load_definitions(path),
            repeat=10,
            target=0.5,
        )
        code = f"from servo.sdk.loader import load_definitions; load_definitions({str(path)!r})"
        measure(
            f"load_definitions[{size}] fresh process",
            lambda: subprocess.run([sys.executable, "-c", code], check=True),
            repeat=5,
        )


def bench_cli_help() -> None:
    servo = shutil.which("servo")
    command = [servo] if servo else [sys.executable, "-m", "servo.cli"]
    measure(
        "servo --help (wall)",
        lambda: subprocess.run([*command, "--help"], check=True, capture_output=True),
        repeat=10,
        target=0.3,
    )


def main() -> None:
    """Run every graph benchmark and print one line each."""
    for size in (1_000, 100_000):
        bench_queries(size)
    bench_plan(100_000)
    bench_load(1_000)
    bench_cli_help()


if __name__ == "__main__":
    main()
