"""The `servo serve` app: /execute's order, probes, /metrics, role gating, HTTP metrics.

Authentication and rate limits are spies here (what matters is which step refuses and
which steps never run), except in the last tests, which wire the real `Authenticator`
(HMAC) and `RateLimiter` through `build_serve_config`. The task runtime is the real
one over a local store wherever a task runs.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.responses import JSONResponse, Response
from structlog.testing import capture_logs

from servo.config.settings import load_settings
from servo.engine import events as ev
from servo.engine.ledger import LedgerReader, ledger_prefix
from servo.engine.request import TaskRequest
from servo.errors import ConfigError, DefinitionError
from servo.observability import metrics
from servo.observability.logging import configure_logging
from servo.resilience.rate_limit import Decision
from servo.sdk.loader import load_definitions
from servo.serve.app import create_app
from servo.serve.auth import (
    SIGNATURE_HEADER,
    AuthError,
    AuthMethod,
    AuthReason,
    AuthUnavailable,
    Principal,
    sign_hmac,
)
from servo.serve.config import InternalCall, ServeConfig
from servo.serve.factory import build_serve_config
from servo.serve.validation import FIELDS
from servo.storage.local import LocalObjectStore
from servo.worker.runtime import LedgerSink, TaskReport, TaskRuntime

with warnings.catch_warnings():
    # starlette 1.x prefers the httpx2 package; the project's test client is httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

DEFS = """
from servo import asset

@asset
def numbers() -> list[int]:
    return [1, 2, 3]

@asset
def broken() -> int:
    raise ValueError("boom")
"""
SECRET = "hmac-secret-for-tests-0123456789"
PRINCIPAL = Principal(AuthMethod.HMAC, "hmac")


# ------------------------------------------------------------------------ spies
@dataclass
class SpyAuth:
    """Authenticates everyone, or refuses with `error`; records every call."""

    error: Exception | None = None
    calls: list[bytes] = field(default_factory=list)

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, *, client: str | None = None
    ) -> Principal:
        self.calls.append(body)
        if self.error is not None:
            raise self.error
        return PRINCIPAL

    def describe(self) -> dict[str, Any]:
        return {"methods": ["spy"]}


@dataclass
class SpyLimiter:
    """Allows everything unless told otherwise; records every key it was asked about."""

    tenant_allowed: bool = True
    metrics_allowed: bool = True
    tenants: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)

    def tenant(self, tenant_id: str) -> Decision:
        self.tenants.append(tenant_id)
        return Decision(self.tenant_allowed, 0 if self.tenant_allowed else 1)

    def metrics_client(self, ip: str) -> Decision:
        self.clients.append(ip)
        return Decision(self.metrics_allowed, 0 if self.metrics_allowed else 60)

    def describe(self) -> dict[str, Any]:
        return {}


@dataclass
class SpyRuntime:
    """Records requests; can block until released, or raise."""

    error: Exception | None = None
    block: bool = False
    calls: list[TaskRequest] = field(default_factory=list)
    first_deliveries: list[bool] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def execute(self, request: TaskRequest, *, first_delivery: bool = False) -> TaskReport:
        self.calls.append(request)
        self.first_deliveries.append(first_delivery)
        self.entered.set()
        if self.block:
            assert self.release.wait(10)
        if self.error is not None:
            raise self.error
        return TaskReport()

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------- helpers
@pytest.fixture
def defs_file(tmp_path: Path) -> Path:
    path = tmp_path / "serve_defs.py"
    path.write_text(DEFS, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


@pytest.fixture
def runtime(store: LocalObjectStore, defs_file: Path) -> Iterator[TaskRuntime]:
    runtime = TaskRuntime(store, load_definitions(defs_file), sink=LedgerSink(store))
    yield runtime
    runtime.close()


def task(attempt_id: str = "01HATTEMPT0001", asset: str = "numbers", **changes: Any) -> dict:
    request = TaskRequest(
        tenant_id="t1",
        workspace_id="w1",
        run_id="r_0001",
        task_key=asset,
        asset_key=asset,
        partition_key=None,
        attempt=1,
        attempt_id=attempt_id,
        dispatch_id=f"dispatch:t1:w1:r_0001:{asset}:1",
        cloud_task_id="d_abc",
    )
    return {**request.to_dict(), **changes}


def config(**overrides: Any) -> ServeConfig:
    values: dict[str, Any] = {
        "role": "worker",
        "authenticator": SpyAuth(),
        "rate_limiter": SpyLimiter(),
        "runtime": SpyRuntime(),
    }
    values.update(overrides)
    return ServeConfig(**values)


def post(client: TestClient, body: Any, path: str = "/execute", **headers: str) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers=headers)


def finished_events(store: LocalObjectStore) -> list[ev.Event]:
    reader = LedgerReader(store)
    found = []
    for path in store.list_prefix(ledger_prefix("t1", "w1")):
        found += [e for e in reader.read(path) if isinstance(e.payload, ev.TaskFinished)]
    return found


# ------------------------------------------------------------- /execute: order
def test_an_unauthenticated_request_reaches_neither_the_limiter_nor_the_runtime() -> None:
    auth = SpyAuth(error=AuthError(AuthReason.BAD_SIGNATURE, "no match"))
    limiter, runtime = SpyLimiter(), SpyRuntime()
    app = create_app(config(authenticator=auth, rate_limiter=limiter, runtime=runtime))
    with TestClient(app) as client:
        answer = post(client, task())
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthenticated", "reason": "bad_signature"}
    assert len(auth.calls) == 1
    assert limiter.tenants == [] and runtime.calls == []


def test_unavailable_authentication_answers_503_with_retry_after() -> None:
    limiter, runtime = SpyLimiter(), SpyRuntime()
    auth = SpyAuth(error=AuthUnavailable("jwks unreachable"))
    app = create_app(config(authenticator=auth, rate_limiter=limiter, runtime=runtime))
    with TestClient(app) as client:
        answer = post(client, task())
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["error"] == "auth_unavailable"
    assert "jwks" not in answer.text
    assert limiter.tenants == [] and runtime.calls == []


def test_a_rate_limited_tenant_gets_429_and_the_runtime_is_not_called() -> None:
    limiter, runtime = SpyLimiter(tenant_allowed=False), SpyRuntime()
    app = create_app(config(rate_limiter=limiter, runtime=runtime))
    with TestClient(app) as client:
        answer = post(client, task())
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "rate_limited"
    assert limiter.tenants == ["t1"]
    assert runtime.calls == []


def test_the_rate_limit_runs_before_validation() -> None:
    """An over-limit tenant is refused before its (invalid) body is examined."""
    limiter = SpyLimiter(tenant_allowed=False)
    app = create_app(config(rate_limiter=limiter))
    with TestClient(app) as client:
        answer = post(client, {"tenant_id": "t1", "attempt": "x"})
    assert answer.status_code == 429


def test_an_invalid_body_gets_400_in_the_validation_error_shape() -> None:
    runtime = SpyRuntime()
    app = create_app(config(runtime=runtime))
    body = task(attempt=0, tenant_id="t1", extra=1)
    del body["run_id"]
    body["inputs"] = [{"name": "a", "location": 5, "format": "json"}]
    with TestClient(app) as client:
        answer = post(client, body)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["error"] == "validation_error"
    assert payload["message"] == "Validation failed"
    problems = {(d["field"], d["code"]) for d in payload["details"]}
    assert problems == {
        ("attempt", "invalid_value"),
        ("extra", "unexpected"),
        ("run_id", "missing"),
        ("inputs[0].location", "invalid_type"),
    }
    assert all(set(d) == {"field", "code", "message"} for d in payload["details"])
    assert runtime.calls == []


@pytest.mark.parametrize(
    ("body", "field_name", "code"),
    [
        (b"{not json", "body", "invalid_json"),
        (b"[1, 2]", "body", "invalid_type"),
        (json.dumps(task(tenant_id="../etc")).encode(), "tenant_id", "invalid_value"),
        (json.dumps(task(attempt_id="a/../b")).encode(), "attempt_id", "invalid_value"),
        (json.dumps(task(attempt=True)).encode(), "attempt", "invalid_type"),
        (json.dumps(task(retry={"max_attempts": 0})).encode(), "retry", "invalid_value"),
    ],
)
def test_malformed_bodies_name_the_field(body: bytes, field_name: str, code: str) -> None:
    limiter = SpyLimiter()
    with TestClient(create_app(config(rate_limiter=limiter))) as client:
        answer = post(client, body)
    assert answer.status_code == 400
    assert (field_name, code) in {(d["field"], d["code"]) for d in answer.json()["details"]}


def test_an_oversized_body_is_refused_before_authentication() -> None:
    auth = SpyAuth()
    with TestClient(create_app(config(authenticator=auth, max_body_bytes=64))) as client:
        answer = post(client, b"x" * 65)
        wrong_method = client.get("/execute")
    assert answer.status_code == 413
    assert auth.calls == []
    assert wrong_method.status_code == 405


def test_the_validation_table_covers_every_task_request_field() -> None:
    fields = dataclasses.fields(TaskRequest)
    assert set(FIELDS) == {f.name for f in fields}
    for f in fields:
        has_default = f.default is not dataclasses.MISSING
        assert FIELDS[f.name][1] == has_default, f.name


# ----------------------------------------------------------- /execute: running
def test_a_valid_request_runs_and_a_redelivery_reuses_the_recorded_result(
    runtime: TaskRuntime, store: LocalObjectStore
) -> None:
    app = create_app(config(runtime=runtime))
    with TestClient(app) as client:
        first = post(client, task("01HFIRST"))
        again = post(client, task("01HFIRST"))
    assert first.status_code == 200
    assert first.json() == {"attempt_id": "01HFIRST", "outcome": "succeeded", "reused": False}
    assert again.status_code == 200
    assert again.json() == {"attempt_id": "01HFIRST", "outcome": "succeeded", "reused": True}
    finished = finished_events(store)
    assert [e.attempt_id for e in finished] == ["01HFIRST", "01HFIRST"]


def test_a_first_delivery_skips_the_record_look_up_and_a_retry_does_not(
    runtime: TaskRuntime, store: LocalObjectStore
) -> None:
    """Cloud Tasks' retry and execution counts say whether the attempt was delivered
    before; only then can it have a record to reuse."""
    spy = SpyRuntime()
    first = {"X-CloudTasks-TaskRetryCount": "0", "X-CloudTasks-TaskExecutionCount": "0"}
    retried = {"X-CloudTasks-TaskRetryCount": "1", "X-CloudTasks-TaskExecutionCount": "0"}
    with TestClient(create_app(config(runtime=spy))) as client:
        for headers in (first, retried, {}):
            assert post(client, task("01HSPY"), **headers).status_code == 200
    assert spy.first_deliveries == [True, False, False]
    with TestClient(create_app(config(runtime=runtime))) as client:
        ran = post(client, task("01HFIRST"), **first)
        again = post(client, task("01HFIRST"), **retried)
    assert ran.json()["reused"] is False
    assert again.json()["reused"] is True, "a redelivery finds the first record"


def test_a_failing_asset_is_a_200_with_outcome_failed(runtime: TaskRuntime) -> None:
    with TestClient(create_app(config(runtime=runtime))) as client:
        answer = post(client, task("01HBROKEN", asset="broken"))
    assert answer.status_code == 200
    assert answer.json() == {"attempt_id": "01HBROKEN", "outcome": "failed", "reused": False}


def test_at_max_concurrency_a_request_gets_503_with_retry_after() -> None:
    runtime = SpyRuntime(block=True)
    app = create_app(config(runtime=runtime, max_concurrency=1))
    answers: dict[str, Any] = {}
    with TestClient(app) as client:
        first = threading.Thread(target=lambda: answers.update(a=post(client, task("01HA"))))
        first.start()
        assert runtime.entered.wait(10)
        busy = post(client, task("01HB"))
        runtime.release.set()
        first.join(10)
        after = post(client, task("01HC"))
    assert busy.status_code == 503
    assert int(busy.headers["retry-after"]) >= 1
    assert busy.json()["error"] == "at_capacity"
    assert answers["a"].status_code == 200
    assert after.status_code == 200
    assert [r.attempt_id for r in runtime.calls] == ["01HA", "01HC"]


def test_an_unexpected_runtime_error_is_a_500_with_a_log_and_a_metric() -> None:
    runtime = SpyRuntime(error=OSError("gs://bucket?token=s3cr3t unreachable"))
    labels = {"phase": "execute", "error_type": "OSError"}
    before = metrics.sample("servo_execute_errors_total", labels)
    with capture_logs() as logs, TestClient(create_app(config(runtime=runtime))) as client:
        answer = post(client, task("01HERR"))
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal"
    assert "s3cr3t" not in answer.text
    assert metrics.sample("servo_execute_errors_total", labels) == before + 1
    failed = [e for e in logs if e["event"] == "serve.execute_failed"]
    assert len(failed) == 1
    context = {k: failed[0][k] for k in ("tenant_id", "run_id", "task_key", "attempt_id")}
    assert context == {
        "tenant_id": "t1",
        "run_id": "r_0001",
        "task_key": "numbers",
        "attempt_id": "01HERR",
    }


def test_the_report_hook_sees_each_report_and_its_failure_is_a_500() -> None:
    seen: list[tuple[str, bool]] = []

    def hook(request: TaskRequest, report: TaskReport) -> None:
        seen.append((request.attempt_id, report.reused))
        if request.attempt_id == "01HBAD":
            raise ConnectionError("reconciler down")

    with TestClient(create_app(config(on_report=hook))) as client:
        good = post(client, task("01HGOOD"))
        bad = post(client, task("01HBAD"))
    assert good.status_code == 200
    assert bad.status_code == 500
    assert seen == [("01HGOOD", False), ("01HBAD", False)]


def test_the_runtime_factory_runs_at_startup_and_the_runtime_closes_at_shutdown() -> None:
    runtime = SpyRuntime()
    app = create_app(config(runtime=None, runtime_factory=lambda: runtime))
    with TestClient(app) as client:
        assert client.get("/health/startup").status_code == 200
        assert post(client, task()).status_code == 200
    assert runtime.closed


def test_a_worker_role_needs_a_runtime() -> None:
    with pytest.raises(ConfigError, match="runtime"):
        config(runtime=None)
    with pytest.raises(ConfigError, match="unknown internal handlers"):
        config(role="reconciler", internal_handlers={"nope": None})


# ----------------------------------------------------------------------- probes
def test_probes_report_each_check_in_the_spec_shape() -> None:
    app = create_app(config(readiness_checks={"storage": lambda: None}, version={"servo": "9"}))
    with TestClient(app) as client:
        answers = {path: client.get(path) for path in ("/health/ready", "/ready", "/health")}
        live = client.get("/health/live")
        startup = client.get("/health/startup")
    for answer in answers.values():
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "ready"
        assert set(body["checks"]) == {"storage"}
        assert body["checks"]["storage"]["status"] == "up"
        assert isinstance(body["checks"]["storage"]["latency_ms"], int)
    assert answers["/health"].json()["version"] == {"servo": "9"}
    assert live.status_code == 200 and startup.status_code == 200


def test_a_failing_check_is_down_with_its_type_only() -> None:
    def postgres() -> None:
        raise RuntimeError("cannot connect to postgresql://servo:hunter2@db:5432/servo")

    checks = {"storage": lambda: None, "postgres": postgres}
    with TestClient(create_app(config(readiness_checks=checks))) as client:
        answer = client.get("/health/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["storage"]["status"] == "up"
    assert body["checks"]["postgres"]["status"] == "down"
    assert body["checks"]["postgres"]["error"] == "RuntimeError"
    assert "hunter2" not in answer.text and "postgresql" not in answer.text


def test_a_hanging_check_times_out_and_is_not_run_twice_while_it_hangs() -> None:
    calls = []
    release = threading.Event()

    def hangs() -> None:
        calls.append(1)
        release.wait(5)

    app = create_app(
        config(readiness_checks={"queue": hangs}, readiness_timeout_s=0.05, readiness_cache_s=0)
    )
    with TestClient(app) as client:
        first = client.get("/ready")
        second = client.get("/ready")
        release.set()
    for answer in (first, second):
        assert answer.status_code == 503
        assert answer.json()["checks"]["queue"] == {
            "status": "down",
            "latency_ms": answer.json()["checks"]["queue"]["latency_ms"],
            "error": "TimeoutError",
        }
    assert len(calls) == 1


def test_readiness_results_are_reused_for_the_cache_period() -> None:
    calls = []
    app = create_app(config(readiness_checks={"storage": lambda: calls.append(1)}))
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get("/health/ready").status_code == 200
    assert len(calls) == 1


def test_before_startup_the_app_is_not_started_nor_ready() -> None:
    client = TestClient(create_app(config()))  # no `with`: the lifespan does not run
    assert client.get("/health/startup").status_code == 503
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["startup"]["status"] == "down"
    assert client.get("/health/live").status_code == 200


# ---------------------------------------------------------------------- /metrics
def test_metrics_require_the_bearer_token_when_one_is_set() -> None:
    with TestClient(create_app(config(metrics_token="scrape-token"))) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"] == "unauthenticated"
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "servo_http_requests_total" in right.text


def test_metrics_are_rate_limited_per_ip_before_the_token_is_checked() -> None:
    limiter = SpyLimiter(metrics_allowed=False)
    app = create_app(config(rate_limiter=limiter, metrics_token="scrape-token"))
    with TestClient(app) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "60"
    assert limiter.clients == ["testclient"]


def test_metrics_without_a_token_are_open() -> None:
    with TestClient(create_app(config())) as client:
        assert client.get("/metrics").status_code == 200


# ------------------------------------------------------------------- role gating
def test_a_worker_serves_no_internal_routes() -> None:
    with TestClient(create_app(config())) as client:
        for name in ("reconcile", "timers", "sweep"):
            assert client.post(f"/internal/{name}", content=b"{}").status_code == 404


def test_a_reconciler_serves_no_execute_and_answers_501_for_unplugged_routes() -> None:
    auth = SpyAuth()
    app = create_app(config(role="reconciler", runtime=None, authenticator=auth))
    with TestClient(app) as client:
        assert post(client, task()).status_code == 404
        answer = client.post("/internal/timers", content=b"{}")
    assert answer.status_code == 501
    assert answer.json()["error"] == "not_implemented"
    assert auth.calls == [b"{}"]


def test_internal_routes_authenticate_first_then_call_the_plugged_handler() -> None:
    calls: list[InternalCall] = []

    async def reconcile(call: InternalCall) -> Response:
        calls.append(call)
        return JSONResponse({"folded": len(call.body)})

    refusing = SpyAuth(error=AuthError(AuthReason.MISSING_CREDENTIALS, "none"))
    handlers = {"reconcile": reconcile}
    base = {"role": "reconciler", "runtime": None, "internal_handlers": handlers}
    with TestClient(create_app(config(**base, authenticator=refusing))) as client:
        refused = client.post("/internal/reconcile", content=b"abc")
    assert refused.status_code == 401
    assert calls == []
    with TestClient(create_app(config(**base))) as client:
        handled = client.post("/internal/reconcile", content=b"abc")
    assert handled.status_code == 200 and handled.json() == {"folded": 3}
    assert [(c.name, c.body, c.principal) for c in calls] == [("reconcile", b"abc", PRINCIPAL)]


def test_the_all_role_serves_both() -> None:
    with TestClient(create_app(config(role="all"))) as client:
        assert post(client, task()).status_code == 200
        assert client.post("/internal/sweep", content=b"").status_code == 501


# ------------------------------------------------------------------ HTTP metrics
def test_http_metrics_label_the_route_template_never_the_raw_path() -> None:
    def count(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return metrics.sample("servo_http_requests_total", labels)

    auth = SpyAuth(error=AuthError(AuthReason.MISSING_CREDENTIALS, "none"))
    before = (count("/execute", "POST", "401"), count("other", "GET", "404"))
    with TestClient(create_app(config(authenticator=auth))) as client:
        post(client, task())
        client.get("/no/such/path/12345")
        client.request("BREW", "/health/live")
    after = (count("/execute", "POST", "401"), count("other", "GET", "404"))
    assert after == (before[0] + 1, before[1] + 1)
    assert count("/health/live", "other", "405") >= 1
    rendered = metrics.render().decode()
    assert "12345" not in rendered
    assert metrics.sample("servo_http_request_duration_seconds_count", {"route": "/execute"}) > 0
    assert metrics.sample("servo_http_response_size_bytes_sum", {"route": "/execute"}) > 0


# --------------------------------------------------- the real auth and limiter
def settings_for(tmp_path: Path, **environ: str) -> Any:
    env = {"SERVO_HOME": str(tmp_path / "home"), "SERVO_STORAGE_FSYNC": "false", **environ}
    return load_settings(environ=env, cwd=tmp_path)


def signed(body: dict, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    content = json.dumps(body).encode()
    return content, {SIGNATURE_HEADER: sign_hmac(secret, content, time.time())}


def test_build_serve_config_wires_the_real_authenticator_limiter_and_runtime(
    tmp_path: Path, defs_file: Path
) -> None:
    settings = settings_for(
        tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET, SERVO_METRICS_TOKEN="scrape-secret"
    )
    configure_logging("INFO", "json")  # info must not be filtered out before capture
    try:
        with capture_logs() as logs:
            serve_config = build_serve_config(settings, "worker", str(defs_file))
    finally:
        configure_logging("WARNING", "console")  # the default
    logged = [e for e in logs if e["event"] == "serve.config"]
    assert len(logged) == 1
    assert SECRET not in repr(logged[0]) and "scrape-secret" not in repr(logged[0])
    assert SECRET not in repr(serve_config)
    assert set(serve_config.readiness_checks) == {"storage"}
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    with TestClient(create_app(serve_config)) as client:
        forged = client.post("/execute", content=json.dumps(task()).encode())
        content, headers = signed(task("01HREAL"))
        answer = client.post("/execute", content=content, headers=headers)
        replayed = client.post("/execute", content=content, headers=headers)
        ready = client.get("/health/ready")
    assert forged.status_code == 401
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"attempt_id": "01HREAL", "outcome": "succeeded", "reused": False}
    assert replayed.status_code == 401  # the replay cache refuses the same signature
    assert ready.json()["checks"]["storage"]["status"] == "up"
    assert [e.attempt_id for e in finished_events(store)] == ["01HREAL"]


def test_the_real_tenant_limit_answers_429_with_retry_after_1(
    tmp_path: Path, defs_file: Path
) -> None:
    settings = settings_for(
        tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET, SERVO_RATE_LIMIT_TENANT_RPS="1"
    )
    app = create_app(build_serve_config(settings, "worker", str(defs_file)))
    with TestClient(app) as client:
        answers = []
        for n in range(2):
            content, headers = signed(task(f"01HLIMIT{n}"))
            answers.append(client.post("/execute", content=content, headers=headers))
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[1].headers["retry-after"] == "1"


def test_build_serve_config_refuses_missing_authentication_and_definitions(
    tmp_path: Path, defs_file: Path
) -> None:
    with pytest.raises(ConfigError, match="SERVO_WORKER_HMAC_SECRET"):
        build_serve_config(settings_for(tmp_path), "worker", str(defs_file))
    with pytest.raises(DefinitionError, match="--defs"):
        build_serve_config(settings_for(tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET), "worker", None)
    with pytest.raises(DefinitionError, match="--defs"):  # it plans requests from them
        build_serve_config(
            settings_for(tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET), "reconciler", None
        )
    with pytest.raises(ConfigError, match="SERVO_CLOUD_PROVIDER=gcp"):
        build_serve_config(
            settings_for(tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET), "reconciler", str(defs_file)
        )


# ----------------------------------------------------------------- trace context
@dataclass
class ContextSpy(SpyRuntime):
    """Records the structured-log context an attempt runs in."""

    contexts: list[dict[str, Any]] = field(default_factory=list)

    def execute(self, request: TaskRequest, *, first_delivery: bool = False) -> TaskReport:
        import structlog

        self.contexts.append(dict(structlog.contextvars.get_contextvars()))
        return super().execute(request, first_delivery=first_delivery)


def test_the_attempt_logs_carry_the_trace_context_of_its_dispatch() -> None:
    runtime = ContextSpy()
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with TestClient(create_app(config(runtime=runtime))) as client:
        servo_header = post(client, task("01HT1"), **{"X-Servo-Traceparent": trace})
        replaced = post(
            client, task("01HT2"), traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
            **{"X-Servo-Traceparent": trace},
        )  # fmt: skip
        malformed = post(client, task("01HT3"), traceparent="not-a-trace")
    assert [a.status_code for a in (servo_header, replaced, malformed)] == [200, 200, 200]
    ids = [(c.get("trace_id"), c.get("parent_span_id")) for c in runtime.contexts]
    expected = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert ids == [expected, expected, (None, None)], "Servo's header wins; bad ones ignored"
