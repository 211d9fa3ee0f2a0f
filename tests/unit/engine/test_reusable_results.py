"""Which earlier attempts' recorded results a new attempt may report."""

from __future__ import annotations

import pytest

from servo.engine import events as ev
from servo.engine.derive import reusable_attempt_ids
from servo.engine.vocabulary import AbandonReason

from .strategies import History, fold


@pytest.mark.parametrize(
    ("reason", "reusable"),
    [
        (AbandonReason.WORKER_LOST, True),
        (AbandonReason.HEARTBEAT_MISSED, True),
        (AbandonReason.POOL_LOST, True),
        (AbandonReason.TIMEOUT, False),
        (AbandonReason.CANCELLED, False),
    ],
)
def test_only_attempts_whose_end_went_unseen_are_reusable(
    reason: AbandonReason, reusable: bool
) -> None:
    """A lost worker may have recorded its result unseen: the next attempt reports it.
    An attempt the engine ended for a timeout or a cancel never lends its result."""
    h = History()
    h.request({"a": []}, max_attempts=3)
    aid = h.dispatch("a")
    h.emit(ev.TaskStarted(worker_id="w"), "a", 1, aid)
    h.emit(ev.AttemptAbandoned(reason=reason, retryable=True), "a", 1, aid)
    state = fold(h.events)
    found = reusable_attempt_ids(state.attempts_of("run1", "a"), before=2)
    assert found == ((aid,) if reusable else ())


def test_an_attempt_that_reported_its_own_end_is_not_reusable() -> None:
    h = History()
    h.request({"a": []}, max_attempts=3)
    h.run_attempt("a", 1, "failed", retryable=True)
    state = fold(h.events)
    assert reusable_attempt_ids(state.attempts_of("run1", "a"), before=2) == ()
