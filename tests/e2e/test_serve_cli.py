"""``servo serve`` as a real process: it starts, runs a signed push, stops on SIGTERM.

The worker listens on a free loopback port with an HMAC secret and a home of its own;
the test signs an /execute body as a sender would, then reads the attempt's
`TaskFinished` back from the ledger through the store, as the reconciler would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servo.engine import events as ev
from servo.engine.ledger import LedgerReader, ledger_prefix
from servo.engine.request import TaskRequest
from servo.serve.auth import SIGNATURE_HEADER, sign_hmac
from servo.storage.local import LocalObjectStore
from servo.testing.ports import free_port

from ._cli import COMMAND, run, write

pytestmark = pytest.mark.e2e

SECRET = "e2e-hmac-secret-5c1d9a7e3b"
DEFS = """
from servo import asset

@asset
def numbers() -> list[int]:
    return [1, 2, 3]
"""


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    environ.update(
        HOME=str(tmp_path),  # no ~/.servo/config.yaml of the machine
        SERVO_HOME=str(tmp_path / "home"),
        SERVO_STORAGE_FSYNC="false",
        SERVO_LOG_FORMAT="json",
        **extra,
    )
    return environ


def a_request(attempt_id: str) -> TaskRequest:
    return TaskRequest(
        tenant_id="acme",
        workspace_id="prod",
        run_id="r_e2e",
        task_key="numbers",
        asset_key="numbers",
        partition_key=None,
        attempt=1,
        attempt_id=attempt_id,
        dispatch_id="dispatch:acme:prod:r_e2e:numbers:1",
        cloud_task_id="d_e2e",
    )


class Worker:
    """A `servo serve --role worker` subprocess and its address."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        defs = write(tmp_path / "definitions.py", DEFS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        args = ["serve", "--role", "worker", "--defs", str(defs)]
        args += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*COMMAND, *args],
                cwd=tmp_path,
                env=environment(tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_started(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.url}/health/startup", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"servo serve did not start in {timeout_s} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    started = Worker(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_a_worker_runs_a_signed_push_and_stops_cleanly_on_sigterm(
    worker: Worker, tmp_path: Path
) -> None:
    worker.wait_started()
    body = a_request("01HE2EATTEMPT").to_json()
    unsigned = httpx.post(f"{worker.url}/execute", content=body, timeout=30)
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, body, time.time())}
    answer = httpx.post(f"{worker.url}/execute", content=body, headers=headers, timeout=30)
    ready = httpx.get(f"{worker.url}/health/ready", timeout=10)

    assert unsigned.status_code == 401
    assert answer.status_code == 200, (answer.text, worker.output())
    assert answer.json() == {"attempt_id": "01HE2EATTEMPT", "outcome": "succeeded", "reused": False}
    assert ready.json()["checks"]["storage"]["status"] == "up"

    store = LocalObjectStore(tmp_path / "home", fsync=False)
    reader = LedgerReader(store)
    events = [e for p in store.list_prefix(ledger_prefix("acme", "prod")) for e in reader.read(p)]
    finished = [e for e in events if isinstance(e.payload, ev.TaskFinished)]
    assert [(e.attempt_id, e.payload.outcome) for e in finished] == [  # type: ignore[union-attr]
        ("01HE2EATTEMPT", "succeeded")
    ]

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(10) == 0, worker.output()
    logged = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    events_logged = [line["event"] for line in logged]
    assert "serve.config" in events_logged and "serve.stopped" in events_logged
    assert SECRET not in worker.output()


def test_a_zero_rate_limit_is_refused_at_startup_naming_the_variable(tmp_path: Path) -> None:
    defs = write(tmp_path / "definitions.py", DEFS)
    environ = environment(
        tmp_path, SERVO_WORKER_HMAC_SECRET=SECRET, SERVO_RATE_LIMIT_TENANT_RPS="0"
    )
    result = subprocess.run(
        [*COMMAND, "serve", "--role", "worker", "--defs", str(defs), "--port", str(free_port())],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "SERVO_RATE_LIMIT_TENANT_RPS" in errors[0]
    assert "Traceback" not in result.stderr


def test_serving_without_authentication_configured_is_refused(tmp_path: Path) -> None:
    defs = write(tmp_path / "definitions.py", DEFS)
    result = run("serve", "--defs", str(defs), cwd=tmp_path, HOME=str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and "SERVO_WORKER_HMAC_SECRET" in result.stderr


_PROBE = """
import json, sys
from servo.cli.main import main
code = main(sys.argv[1:])
loaded = sorted({m.partition('.')[0] for m in sys.modules} & {"starlette", "uvicorn", "httpx"})
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [("--help",), ("serve", "--help")])
def test_help_imports_no_web_server(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}
    if args[0] == "serve":
        assert "--role" in done.stdout


@pytest.mark.parametrize(("trusted", "limited"), [("*", False), ("10.9.9.9", True)])
def test_the_per_ip_metrics_limit_sees_the_forwarded_client_only_from_trusted_peers(
    tmp_path: Path, trusted: str, limited: bool
) -> None:
    """Behind Cloud Run's front end every request comes from the proxy: with its
    X-Forwarded-For trusted, two callers have a limit each; untrusted, they share one."""
    worker = Worker(tmp_path, SERVO_RATE_LIMIT_METRICS_RPM="1",
                    SERVO_CLOUD_CLOUD_RUN_FORWARDED_ALLOW_IPS=trusted)  # fmt: skip
    try:
        worker.wait_started()
        answers = [
            httpx.get(f"{worker.url}/metrics", headers={"X-Forwarded-For": caller}, timeout=10)
            for caller in ("203.0.113.7", "198.51.100.4")
        ]
    finally:
        worker.stop()
    assert answers[0].status_code == 200
    assert answers[1].status_code == (429 if limited else 200), worker.output()
