"""Identifiers: ULIDs that any ULID library reads, unique and time-ordered."""

from __future__ import annotations

import multiprocessing
import random
import time

import pytest
from ulid import ULID

from servo.engine.ids import new_ulid, run_id_for_key


def test_new_ulid_is_a_valid_ulid_of_now() -> None:
    before = time.time_ns() // 1_000_000
    value = new_ulid()
    after = time.time_ns() // 1_000_000
    parsed = ULID.from_str(value)
    assert str(parsed) == value and len(value) == 26
    assert before <= parsed.milliseconds <= after


def test_new_ulids_are_unique_and_ordered_by_millisecond() -> None:
    values = [new_ulid() for _ in range(20_000)]
    assert len(set(values)) == len(values)
    stamps = [ULID.from_str(v).milliseconds for v in values]
    assert stamps == sorted(stamps)


def _child_ulids(_: int) -> list[str]:
    return [new_ulid() for _ in range(1000)]


def test_forked_workers_draw_different_ids() -> None:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        first, second = pool.map(_child_ulids, [0, 1])
    assert not set(first) & set(second)


def test_run_id_for_an_idempotency_key_is_stable_and_scoped() -> None:
    assert run_id_for_key("t", "w", "k") == run_id_for_key("t", "w", "k")
    assert run_id_for_key("t", "w", "k") != run_id_for_key("t2", "w", "k")


def test_every_random_bit_reaches_the_string(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 10-bit table lookups spell what 5-bit digits would, for any random bits."""
    from servo.engine import ids

    class Drawn:
        bits = 0

        def getrandbits(self, _: int) -> int:
            return self.bits

    drawn = Drawn()
    monkeypatch.setattr(ids, "_RNG", drawn)
    for bits in (0, (1 << 80) - 1, *(random.Random(7).getrandbits(80) for _ in range(200))):
        drawn.bits = bits
        parsed = ULID.from_str(new_ulid())
        assert int.from_bytes(parsed.bytes[6:], "big") == bits
