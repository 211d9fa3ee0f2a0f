"""Logging redacts secrets and stays off stdout; metrics are declared once."""

from __future__ import annotations

import json

import pytest

from servo.observability import metrics
from servo.observability.logging import configure_logging, get_logger


def test_json_logs_carry_context_and_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    get_logger("test").info(
        "thing.happened",
        run_id="r1",
        tenant_id="t1",
        task_key="orders",
        idempotency_key="nightly",
        api_token="s3cret",
        db_password="pw",
        gcp_private_key="pk",
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    line = json.loads(captured.err.strip().splitlines()[-1])
    assert line["event"] == "thing.happened"
    assert (line["run_id"], line["tenant_id"], line["level"]) == ("r1", "t1", "info")
    assert line["api_token"] == line["db_password"] == line["gcp_private_key"] == "[redacted]"
    assert (line["task_key"], line["idempotency_key"]) == ("orders", "nightly")
    assert "s3cret" not in captured.err


def test_level_filters_and_unknown_level_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "console")
    get_logger("test").info("hidden")
    get_logger("test").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err and "shown" in err
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


def test_metrics_are_declared_once_and_rendered() -> None:
    first = metrics.counter("servo_test_things_total", "Things.", ["kind"])
    assert metrics.counter("servo_test_things_total", "Things.", ["kind"]) is first
    first.labels("a").inc(2)
    assert metrics.sample("servo_test_things_total", {"kind": "a"}) == 2.0
    assert b"servo_test_things_total" in metrics.render()
    with pytest.raises(ValueError, match="another kind or labels"):
        metrics.gauge("servo_test_things", "Things.", ["kind"])
