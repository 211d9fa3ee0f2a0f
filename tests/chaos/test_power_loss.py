"""Power-loss simulation: fsync on loses nothing; fsync off is detected and repaired.

`test_power_loss_at_random_writes` runs ``SERVO_POWER_LOSS_TRIALS`` (default
`CI_TRIALS`) trials of `tests.chaos.power_loss.run_trial`, trial ``i`` with seed
``SERVO_POWER_LOSS_SEED + i`` (default: `CI_SEED`). Each trial's seed and what the
cut did are written to the terminal even when the test passes; a failure names the
seeds and how to replay them. ``python -m tests.chaos.power_loss --trials N`` runs
a longer campaign.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from .power_loss import CI_SEED, CI_TRIALS, PowerLossStore, failure_message, run_campaign

pytestmark = pytest.mark.chaos


def test_power_loss_at_random_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("SERVO_POWER_LOSS_SEED", CI_SEED))
    trials = int(os.environ.get("SERVO_POWER_LOSS_TRIALS", CI_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report("")
    results = run_campaign(seed, trials, tmp_path, report=report)
    assert len(results) == trials
    assert all(r.ok for r in results), failure_message(results)
    assert any(r.fsync for r in results) and any(not r.fsync for r in results)
    assert any(r.torn for r in results), "no trial tore a write: the sample tests nothing"


class NeverFlushes(random.Random):
    """The kernel never flushes; a write after the cut's flush point is torn if kept."""

    def random(self) -> float:
        return 0.99


def writes(store: PowerLossStore) -> None:
    store.put_if_absent("a", b"first object")
    generation = store.put_if_absent("b", b"second")
    store.put_if_generation("b", b"second, replaced", generation)
    store.delete("a")


def test_with_fsync_every_write_before_the_cut_survives_whole() -> None:
    store = PowerLossStore(fsync=True, rng=random.Random(1))
    writes(store)
    for cut, expected in [(0, {}), (2, {"a": b"first object", "b": b"second"})]:
        image, loss = store.image(cut, random.Random(2))
        assert {p: image.get(p).data for p in image.list_prefix("")} == expected
        assert loss.dropped == loss.torn == []
    image, _ = store.image(4, random.Random(2))
    assert {p: image.get(p).data for p in image.list_prefix("")} == {"b": b"second, replaced"}


def test_without_fsync_unflushed_writes_are_dropped_or_torn() -> None:
    store = PowerLossStore(fsync=False, rng=NeverFlushes())
    store.put_if_absent("a", b"first object")
    store.put_if_absent("b", b"second object")
    for seed in range(20):
        image, loss = store.image(2, random.Random(seed))
        assert sorted(loss.dropped + loss.torn) == ["a", "b"]
        for path in loss.torn:
            assert len(image.get(path).data) < len(store.get(path).data)
        assert all(image.head(path) is None for path in loss.dropped)
