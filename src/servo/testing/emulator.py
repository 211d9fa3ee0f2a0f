"""`GcpEmulator`: the serverless mode on loopback, every piece real but Google's.

It starts, in this order:

1. fake-gcs-server (ledger, projections, values) with a fresh bucket;
2. PostgreSQL for the catalog (the configured or local server, else a throwaway
   cluster) with a fresh database;
3. the local Cloud Tasks server (in this process: tests set its faults) with the three
   queues the configuration names;
4. one reconciler and `workers` workers, each a real ``servo serve`` process, the
   workers behind a round-robin balancer standing in for Cloud Run's front end;
5. a scheduler thread that asks the reconciler to sweep every `sweep_interval_s`
   (Cloud Scheduler's job), through the reconcile queue like the real one;

and writes the configuration file a client (``SERVO_CONFIG=...``) and the servers
share. Pushes carry OIDC tokens signed by the local server's key; the servers verify
them against its JWKS, exactly as they would Google's.

Processes can be killed and started again (`kill_worker`, `start_worker`,
`kill_reconciler`, `start_reconciler`) on the same ports, for chaos tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from servo.config.settings import deep_merge
from servo.testing.balancer import Balancer
from servo.testing.cloud_tasks.faults import Faults
from servo.testing.cloud_tasks.options import ServerOptions
from servo.testing.cloud_tasks.server import LocalCloudTasks
from servo.testing.fake_gcs import FakeGcsServer
from servo.testing.ports import free_port

PROJECT = "servo-local"
REGION = "local"
SERVICE_ACCOUNT = "servo-tasks@servo-local.iam.gserviceaccount.com"
AUDIENCE = "servo-local"
BUCKET = "servo"
QUEUES = {
    "queue": "servo-tasks",
    "timer_queue": "servo-timers",
    "reconcile_queue": "servo-reconcile",
}


#: Free space /dev/shm must have for fake-gcs-server's objects to go there.
SHM_MIN_FREE_BYTES = 1 << 30


def gcs_root(directory: Path, shm: Path = Path("/dev/shm")) -> Path:
    """Where fake-gcs-server keeps its objects: in memory-backed files (`shm`) when
    there is room, else under `directory`.

    Its filesystem backend writes each object durably: on a disk, one create costs
    about 5 ms of its CPU, on tmpfs 0.5 ms (measured on this project's 2-core
    machine), and a wide run creates thousands. The objects are gone when the
    emulator stops either way.
    """
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free >= SHM_MIN_FREE_BYTES:
            return Path(tempfile.mkdtemp(prefix="servo-emulate-gcs-", dir=shm))
    except OSError:  # not writable, or gone: the disk it is
        pass
    return directory / "gcs"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class EmulatorError(RuntimeError):
    """A piece of the emulator did not start; the message says which and why."""


@dataclass
class EmulatorOptions:
    """How the emulator runs.

    Attributes:
        defs: the definitions file the servers load.
        workers: worker processes.
        worker_concurrency: tasks one worker runs at once.
        directory: where the config, logs and home go (a temporary one if None).
        database: start (or find) PostgreSQL and configure the catalog on it.
        sweep_interval_s: seconds between sweeps (0: none).
        settings: further settings merged into the config file (e.g. the
            ``reconciler`` section's deadlines for chaos tests).
        faults: faults of the local Cloud Tasks server's pushes.
        log_level: the servers' log level.
    """

    defs: Path
    workers: int = 2
    worker_concurrency: int = 8
    directory: Path | None = None
    database: bool = True
    sweep_interval_s: float = 10.0
    settings: dict[str, Any] = field(default_factory=dict)
    faults: Faults | None = None
    log_level: str = "WARNING"


@dataclass
class _Server:
    """One ``servo serve`` process slot: its role, port and current process."""

    role: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None


class GcpEmulator:
    """The serverless mode on loopback; see the module docstring."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self._owns_directory = options.directory is None
        self.directory = Path(options.directory or tempfile.mkdtemp(prefix="servo-emulate-"))
        self.config_path = self.directory / "config.yaml"
        self._gcs_root = gcs_root(self.directory)
        self.gcs = FakeGcsServer(root=self._gcs_root)  # flat cost: see its doc
        self.tasks = LocalCloudTasks(
            ServerOptions(dedup_window_s=3600.0), faults=options.faults or Faults()
        )
        self._cluster: Any = None
        self.database_url: str | None = None
        self._reconciler = _Server("reconciler", free_port(), self.directory / "reconciler.log")
        self._workers = [
            _Server("worker", free_port(), self.directory / f"worker-{i}.log")
            for i in range(options.workers)
        ]
        self.balancer = Balancer([("127.0.0.1", w.port) for w in self._workers])
        self._stop_sweeps = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._client: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Path:
        """Start everything; the config file's path.

        Raises:
            EmulatorError: a server did not start (the others are stopped).
        """
        try:
            gcs_url = self.gcs.start()
            self.gcs.create_bucket(BUCKET)
            if self.options.database:
                self.database_url = self._database()
            address = self.tasks.start()
            host, port = self.balancer.start()
            self._write_config(gcs_url, address, f"http://{host}:{port}")
            if self.database_url is not None:  # the reconciler projects into it
                from servo.catalog.catalog import migrate_catalog
                from servo.config.settings import load_settings

                migrate_catalog(load_settings(self.config_path, environ={}))
            self._create_queues()
            self.start_reconciler()
            for index in range(len(self._workers)):
                self.start_worker(index)
            self._wait_ready([self._reconciler, *self._workers])
            if self.options.sweep_interval_s > 0:
                self._sweeper = threading.Thread(
                    target=self._sweep_loop, name="servo-emulate-scheduler", daemon=True
                )
                self._sweeper.start()
        except BaseException:
            self.stop()
            raise
        return self.config_path

    def stop(self) -> None:
        """Stop every process and server (safe to call twice)."""
        self._stop_sweeps.set()
        if self._sweeper is not None:
            self._sweeper.join(5)
        for server in [*self._workers, self._reconciler]:
            self._terminate(server)
        if self._client is not None:
            self._client.transport.close()
            self._client = None
        self.tasks.stop()
        self.balancer.stop()
        self.gcs.stop()
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if os.environ.get("SERVO_EMULATE_KEEP") is None:
            if not self._gcs_root.is_relative_to(self.directory):
                shutil.rmtree(self._gcs_root, ignore_errors=True)
            if self._owns_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> GcpEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ processes
    @property
    def reconciler_url(self) -> str:
        return f"http://127.0.0.1:{self._reconciler.port}"

    def environment(self) -> dict[str, str]:
        """The environment of a client or server of this emulator."""
        env = dict(os.environ)
        env["SERVO_CONFIG"] = str(self.config_path)
        env.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
        return env

    def worker_url(self, index: int) -> str:
        """Where worker `index` listens (its own port, not the balancer's)."""
        return f"http://127.0.0.1:{self._workers[index].port}"

    def start_reconciler(self) -> None:
        """Start (or start again) the reconciler process on its port."""
        self._spawn(self._reconciler)

    def kill_reconciler(self) -> None:
        """SIGKILL the reconciler (no shutdown: a crash mid-step)."""
        self._kill(self._reconciler)

    def start_worker(self, index: int) -> None:
        """Start (or start again) worker `index` on its port."""
        self._spawn(self._workers[index])

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` (its running attempts die with it)."""
        self._kill(self._workers[index])

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Return once every running server answers /health/startup."""
        self._wait_ready([self._reconciler, *self._workers], timeout_s)

    def logs(self) -> str:
        """Every server's log so far (for a failing test's message)."""
        parts = []
        for server in [self._reconciler, *self._workers]:
            if server.log.exists():
                text = server.log.read_text(errors="replace")[-4000:]
                parts.append(f"--- {server.log.name}\n{text}")
        return "\n".join(parts)

    def _spawn(self, server: _Server) -> None:
        if server.process is not None and server.process.poll() is None:
            return
        command = [sys.executable, "-m", "servo", "serve", "--role", server.role]
        command += ["--defs", str(self.options.defs), "--host", "127.0.0.1"]
        command += ["--port", str(server.port), "--heartbeat-interval", "2"]
        env = self.environment()
        env["SERVO_LOG_LEVEL"] = self.options.log_level
        with server.log.open("ab") as log:
            server.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=env, start_new_session=True
            )

    def _kill(self, server: _Server) -> None:
        process = server.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def _terminate(self, server: _Server) -> None:
        process = server.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _wait_ready(self, servers: list[_Server], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        for server in servers:
            url = f"http://127.0.0.1:{server.port}/health/startup"
            while True:
                process = server.process
                if process is not None and process.poll() is not None:
                    raise EmulatorError(
                        f"servo serve --role {server.role} exited with {process.returncode}:\n"
                        + server.log.read_text(errors="replace")[-4000:]
                    )
                if _answers(url):
                    break
                if time.monotonic() > deadline:
                    raise EmulatorError(
                        f"servo serve --role {server.role} did not start in {timeout_s}s:\n"
                        + server.log.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.05)

    # ------------------------------------------------------------------ pieces
    def _database(self) -> str:
        from servo.testing.postgres import create_database, find_server

        url, self._cluster = find_server()
        return create_database(url, f"servo_emulate_{uuid.uuid4().hex[:12]}")

    def _write_config(self, gcs_url: str, tasks_address: str, worker_url: str) -> None:
        config: dict[str, Any] = {
            "home": str(self.directory / "home"),
            "storage": {"backend": "gcs", "bucket": BUCKET, "endpoint": gcs_url},
            "cloud": {
                "provider": "gcp",
                "gcp": {"project": PROJECT, "region": REGION},
                "cloud_tasks": {
                    **QUEUES,
                    "service_account_email": SERVICE_ACCOUNT,
                    "audience": AUDIENCE,
                    "emulator_host": tasks_address,
                },
                "cloud_run": {"worker_url": worker_url, "reconciler_url": self.reconciler_url},
            },
            "worker": {
                "oidc_audience": AUDIENCE,
                "oidc_issuers": [self.tasks.options.issuer],
                "oidc_jwks_url": self.tasks.jwks_url,
                "allowed_service_accounts": [SERVICE_ACCOUNT],
                # Twice the queue's share per worker: the balancer pins keep-alive
                # connections, so pushes reach workers unevenly.
                "max_concurrency": 2 * self.options.worker_concurrency,
            },
            # A local trial runs many small tasks for one tenant: SPEC's 10/s default
            # would make every wide run crawl.
            "rate_limit": {"tenant_rps": 1000},
            "reconciler": {"report_lag_s": 1.0},
        }
        if self.database_url is not None:
            config["database"] = {"url": self.database_url}
        config = deep_merge(config, self.options.settings)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def _create_queues(self) -> None:
        parent = f"projects/{PROJECT}/locations/{REGION}/queues/"
        concurrency = max(1, len(self._workers) * self.options.worker_concurrency)
        for name, parallel in (("queue", concurrency), ("timer_queue", 0), ("reconcile_queue", 64)):
            self.tasks.ensure_queue(
                parent + QUEUES[name],
                max_dispatches_per_second=500,
                max_concurrent_dispatches=parallel,
                min_backoff_s=0.1,
                max_backoff_s=5.0,
                max_doublings=4,
            )

    def _sweep_loop(self) -> None:
        from google.cloud import tasks_v2

        client = self._client = self.tasks.client()
        queue = f"projects/{PROJECT}/locations/{REGION}/queues/{QUEUES['reconcile_queue']}"
        while not self._stop_sweeps.wait(self.options.sweep_interval_s):
            task = tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url=f"{self.reconciler_url}/internal/sweep",
                    http_method=tasks_v2.HttpMethod.POST,
                    headers={"Content-Type": "application/json"},
                    body=json.dumps({}).encode(),
                    oidc_token=tasks_v2.OidcToken(
                        service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE
                    ),
                )
            )
            with contextlib.suppress(Exception):  # a missed sweep is the next one's work
                client.create_task(parent=queue, task=task)
