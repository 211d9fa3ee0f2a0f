"""W3C trace context: parsed strictly, produced valid, read from Servo's header first."""

from __future__ import annotations

import pytest

from servo.observability import tracecontext


def test_a_valid_traceparent_is_parsed_and_written_back_the_same() -> None:
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    found = tracecontext.parse(value)
    assert found is not None and found.header == value
    assert (found.trace_id, found.parent_id, found.flags) == (
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01"
    )  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
     "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-"
     + "0" * 16 + "-01", "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01"],
)  # fmt: skip
def test_an_absent_or_malformed_traceparent_is_none(value: str | None) -> None:
    assert tracecontext.parse(value) is None


def test_servos_header_wins_over_one_a_proxy_may_have_replaced() -> None:
    ours = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    theirs = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    found = tracecontext.from_headers({"x-servo-traceparent": ours, "traceparent": theirs})
    assert found is not None and found.trace_id == "a" * 32
    fallback = tracecontext.from_headers({"x-servo-traceparent": "bad", "traceparent": theirs})
    assert fallback is not None and fallback.trace_id == "c" * 32


def test_a_fresh_context_is_valid_and_sampled() -> None:
    found = tracecontext.parse(tracecontext.current())
    assert found is not None and found.flags == "01"
    assert tracecontext.current() != tracecontext.current()
