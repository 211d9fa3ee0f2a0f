"""Fault chaos: storage faults at every N-th call never publish what the ledger lacks.

`test_storage_faults_publish_only_the_ledger_and_runs_end_right` runs
``SERVO_CHAOS_FAULT_TRIALS`` (default 30) trials of `tests.chaos.faults`, trial ``i``
with seed ``SERVO_CHAOS_SEED + i`` (fixed in CI, from the clock locally), each seed
printed, and a third as many with torn writes too (``--mode torn``);
``python -m tests.chaos.harness --mode faults --trials N`` runs more. The other tests
check the fault store itself and that the checks can fail.
"""

from __future__ import annotations

import os
import random

import pytest

from servo.engine.ledger import ledger_prefix
from servo.errors import ObjectNotFoundError, StorageError, TransientStorageError
from servo.runner import EmbeddedRunner
from servo.storage.memory import MemoryObjectStore

from .faults import FaultPlan, run_fault_campaign
from .faulty import ATOMIC_KINDS, DiskFullError, FaultRule, FaultyObjectStore
from .harness import TENANT, WORKSPACE, base_seed
from .inprocess import (
    FAST,
    Effects,
    build_definitions,
    check_no_phantoms,
    check_published,
    check_run,
)

pytestmark = pytest.mark.chaos

#: Trials per run of the suite (``SERVO_CHAOS_FAULT_TRIALS``).
DEFAULT_TRIALS = 30


def test_storage_faults_publish_only_the_ledger_and_runs_end_right(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = base_seed()
    trials = int(os.environ.get("SERVO_CHAOS_FAULT_TRIALS", DEFAULT_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report(f"\nfaults: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    outcomes = run_fault_campaign(seed, trials, report)
    injected = sum(sum(o.faults.values()) for o in outcomes)
    report(f"faults: {trials} trials, {injected} faults injected")
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n".join(o.summary() for o in failed)
    assert injected > 0, "no fault was injected: the campaign tested nothing"


def test_torn_writes_are_set_aside_at_start_and_runs_end_right(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = base_seed() + 10_000  # other plans than the atomic campaign's
    trials = max(1, int(os.environ.get("SERVO_CHAOS_FAULT_TRIALS", DEFAULT_TRIALS)) // 3)

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report(f"\ntorn: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    outcomes = run_fault_campaign(seed, trials, report, torn=True)
    torn = sum(o.faults["torn"] for o in outcomes)
    report(f"torn: {trials} trials, {torn} torn writes")
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n".join(o.summary() for o in failed)
    assert torn > 0, "no write was torn: the campaign tested nothing"


def test_every_nth_call_of_an_operation_fails() -> None:
    store = FaultyObjectStore(MemoryObjectStore(), [FaultRule("put_if_absent", 3, "fail")])
    written = []
    for i in range(1, 7):
        try:
            store.put_if_absent(f"p{i}", b"x")
            written.append(i)
        except StorageError:
            pass
    assert written == [1, 2, 4, 5]
    assert [f.count for f in store.injected] == [3, 6]
    store.get("p1")  # other operations are not counted against the rule
    store.enabled = False
    store.put_if_absent("p9", b"x")


def test_torn_write_leaves_half_the_bytes_and_lost_ack_lands() -> None:
    inner = MemoryObjectStore()
    store = FaultyObjectStore(inner, [FaultRule("put_if_absent", 1, "torn")])
    with pytest.raises(StorageError):
        store.put_if_absent("torn", b"0123456789")
    assert inner.get("torn").data == b"01234"
    store = FaultyObjectStore(inner, [FaultRule("put_if_absent", 1, "lost_ack")])
    with pytest.raises(TransientStorageError):
        store.put_if_absent("landed", b"abc")
    assert inner.get("landed").data == b"abc"
    generation = inner.head("landed")
    assert generation is not None
    store = FaultyObjectStore(inner, [FaultRule("put_if_generation", 1, "torn")])
    with pytest.raises(StorageError):
        store.put_if_generation("landed", b"abcdef", generation)
    assert inner.get("landed").data == b"abc"  # half of the new bytes


def test_full_disk_fails_writes_until_space_is_freed() -> None:
    store = FaultyObjectStore(MemoryObjectStore(), [FaultRule("put_if_absent", 2, "enospc")])
    store.put_if_absent("a", b"1")
    with pytest.raises(DiskFullError, match="No space left on device"):
        store.put_if_absent("b", b"2")
    store.enabled = False  # the disk stays full with the rules off
    with pytest.raises(DiskFullError):
        store.put_if_generation("a", b"3", 1)
    assert store.get("a").data == b"1"  # reads still work
    store.free_space()
    store.put_if_absent("c", b"4")


def test_reads_fail_but_are_never_torn_and_slow_calls_go_through() -> None:
    naps: list[float] = []
    inner = MemoryObjectStore()
    inner.put_if_absent("a", b"1")
    store = FaultyObjectStore(
        inner,
        [FaultRule("get", 2, "torn"), FaultRule("head", 1, "slow", slow_s=0.25)],
        sleep=naps.append,
    )
    assert store.get("a").data == b"1"
    with pytest.raises(StorageError):
        store.get("a")
    assert store.head("a") == 1 and naps == [0.25]
    with pytest.raises(ObjectNotFoundError):
        store.get("missing")  # the store's own errors pass through


def test_plans_are_reproducible_and_atomic_unless_asked() -> None:
    for seed in range(100):
        plan = FaultPlan.from_seed(seed)
        assert plan == FaultPlan.from_seed(seed), f"seed={seed}"
        assert 1 <= len(plan.rules) <= 3 and 1 <= plan.faulty_invocations <= 4
        assert all(r.kind in ATOMIC_KINDS for r in plan.rules), f"seed={seed}: {plan.rules}"
    torn = [FaultPlan.from_seed(seed, torn=True) for seed in range(100)]
    assert any(r.kind == "torn" for p in torn for r in p.rules)
    assert FaultRule.draw(random.Random(1)).every >= 3


def test_checks_catch_a_lost_batch_and_a_phantom_row() -> None:
    inner = MemoryObjectStore()
    effects = Effects()
    plan = FaultPlan.from_seed(1).trial
    with EmbeddedRunner(inner, build_definitions(plan, effects), FAST) as runner:
        run_id = runner.start_run().run_id
        runner.wait(run_id)
    assert check_published(inner) == [] and check_no_phantoms(inner) == []
    assert check_run(inner, run_id, plan, effects) == []
    batches = sorted(inner.list_prefix(ledger_prefix(TENANT, WORKSPACE) + "batches/"))
    for path in batches[1:]:  # the projections now hold rows the ledger lacks
        inner.delete(path)
    assert any("!= ledger replay" in p for p in check_published(inner))
    assert any("rows the ledger lacks" in p for p in check_no_phantoms(inner))
    assert check_run(inner, run_id, plan, effects) != []


def test_an_armed_call_fails_once_with_the_rules_off() -> None:
    store = FaultyObjectStore(MemoryObjectStore())
    store.enabled = False
    store.put_if_absent("a", b"1")
    store.arm("put_if_absent", "fail", after=1)
    store.put_if_absent("b", b"2")
    with pytest.raises(StorageError):
        store.put_if_absent("c", b"3")
    store.put_if_absent("c", b"3")  # once only
    store.arm("get", "transient")
    store.disarm()
    assert store.get("a").data == b"1"
