"""benchmarks.peers: arguments, the rounds' order, the generated programs, the ratios.

Nothing here creates a virtualenv or runs a peer: the programs are compiled, not run.
"""

from __future__ import annotations

import ast
import json

import pytest
from benchmarks._peer_programs import dagster_program, prefect_program
from benchmarks.peers import PeerArgs, parse_args, ratio_line, round_order
from benchmarks.workloads import Node, nodes


def test_defaults_are_three_rounds_of_w1_to_w3() -> None:
    assert parse_args([]) == PeerArgs(rounds=3, workloads=("W1", "W2", "W3"))


def test_workloads_and_w4_are_chosen_by_flags() -> None:
    assert parse_args(["--rounds", "1", "--workloads", "w2"]) == PeerArgs(1, ("W2",))
    assert parse_args(["--workloads", "W1", "--w4"]).workloads == ("W1", "W4")


@pytest.mark.parametrize("argv", [["--workloads", "W9"], ["--rounds", "0"], ["--workloads", ","]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_rounds_alternate_the_tools_order() -> None:
    assert round_order(0) == ("servo", "dagster", "prefect")
    assert round_order(1) == ("prefect", "dagster", "servo")
    assert round_order(2) == round_order(0)


def _functions(source: str) -> dict[str, list[str]]:
    tree = ast.parse(source)
    return {
        node.name: [a.arg for a in node.args.args]
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.decorator_list and node.name != "workload"
    }


@pytest.mark.parametrize("workload", ["W1", "W2", "W3", "W4"])
def test_the_peer_programs_define_the_same_graph(workload: str) -> None:
    graph = {n.name: list(n.parents) for n in nodes(workload)}
    dagster = dagster_program(workload, nodes(workload))
    prefect = prefect_program(workload, nodes(workload), 4)
    assert _functions(dagster) == graph
    assert _functions(prefect) == graph
    assert "ThreadPoolTaskRunner(max_workers=4)" in prefect
    assert "dg.materialize(ASSETS)" in dagster


def test_a_peer_program_passes_each_task_its_parents_futures_in_order() -> None:
    graph = [Node("x", (), 2), Node("y", (), 3), Node("z", ("y", "x"), 1)]
    source = prefect_program("T", graph, 4)
    assert "futures['z'] = z.submit(futures['y'], futures['x'])" in source
    assert "def z(y, x):\n    return y + x + 1" in source
    assert '"z": 6' in source  # the expected values travel with the program


def test_the_generated_program_checks_values_and_prints_its_timings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Dagster program with `dg` stubbed: its footer runs, times and checks."""
    source = dagster_program("T", [Node("x", (), 2)])
    stub = (
        source.replace("import dagster as dg", "")
        .replace("@dg.asset\n", "")
        .replace("dg.materialize(ASSETS)", "Result()")
        .replace("result.asset_value(name)", "STORED.get(name, 2)")
    )
    prelude = "class Result:\n    success = True\n\n\nSTORED = {}\n"
    exec(compile(prelude + stub, "<program>", "exec"), {})
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["in_run_s"] >= 0
    assert figures["first_end"] >= figures["built"] >= figures["imported"] >= figures["started"]
    wrong = prelude.replace("STORED = {}", "STORED = {'x': 3}") + stub
    with pytest.raises(SystemExit, match="x = 3, expected 2"):
        exec(compile(wrong, "<program>", "exec"), {})


def test_ratio_lines_say_how_many_times_faster_and_the_verdict() -> None:
    assert ratio_line("W1 in-run servo/dagster", 0.1, 10.0, 0.02).split() == [
        "W1", "in-run", "servo/dagster", "0.0100", "x", "(100.0x", "faster)",
        "target", "<=", "0.02:", "ok",
    ]  # fmt: skip
    assert ratio_line("W2 in-run servo/prefect", 1.0, 10.0, 0.02).endswith("MISSED")
    assert "target" not in ratio_line("W4 in-run servo/prefect", 1.0, 10.0, None)
    assert "(1.5x slower)" in ratio_line("W1 whole-process servo/dagster", 3.0, 2.0, None)
