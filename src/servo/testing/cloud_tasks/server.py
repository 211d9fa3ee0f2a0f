"""`LocalCloudTasks`: the local Cloud Tasks server as one object to start and stop.

It puts together the store (queues, tasks, names), the gRPC service the official
client talks to, the pusher (HTTP pushes with OIDC tokens, retries, rate limits,
faults) and the JWKS server that publishes the token key::

    with LocalCloudTasks(options=ServerOptions(auto_create_queues=True)) as server:
        client = server.client()       # tasks_v2.CloudTasksClient on loopback
        ...
        server.wait_idle()
        client.transport.close()

Threads: gRPC calls are served by a small thread pool, pushes by one asyncio loop in
a thread, the JWKS by a threading HTTP server; all are daemons and `stop` ends them.
"""

from __future__ import annotations

from concurrent import futures
from datetime import timedelta
from types import TracebackType

import grpc  # type: ignore[import-untyped]

from servo.testing.cloud_tasks import service
from servo.testing.cloud_tasks._proto import Client, Queue, tasks_v2, transports
from servo.testing.cloud_tasks.faults import FaultInjector, Faults
from servo.testing.cloud_tasks.oidc import JwksServer, TokenIssuer
from servo.testing.cloud_tasks.options import ServerOptions
from servo.testing.cloud_tasks.pusher import Pusher
from servo.testing.cloud_tasks.stats import PushRecord, Stats
from servo.testing.cloud_tasks.store import TaskStore


class LocalCloudTasks:
    """A Cloud Tasks server on loopback; see the module docstring.

    Args:
        options: dedup window, deadlines, queue auto-creation, token issuer.
        faults: faults injected into pushes (`set_faults` changes them later).
        host: the address to bind (loopback: the server has no authentication).
        port: the gRPC port (0: any free one).
        jwks_port: the JWKS HTTP port (0: any free one).
        issuer: the token issuer (default: a fresh key with `options.issuer`).
    """

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        jwks_port: int = 0,
        issuer: TokenIssuer | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        self.issuer = issuer or TokenIssuer(self.options.issuer, self.options.token_lifetime_s)
        self._host = host
        self._port = port
        self._faults = FaultInjector(faults)
        self.store = TaskStore(self.options)
        self._pusher = Pusher(self.store, self.issuer, self._faults, self.options.max_connections)
        self.store.on_change = self._pusher.wake
        self._jwks = JwksServer(self.issuer, host, jwks_port)
        self._grpc: grpc.Server | None = None
        self._address: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving; the gRPC address (``host:port``)."""
        if self._address is not None:
            return self._address
        try:
            self._jwks.start()
            self._pusher.start()
            workers = futures.ThreadPoolExecutor(max_workers=self.options.grpc_workers)
            # No SO_REUSEPORT: a port in use must fail, not be shared with another server.
            server = grpc.server(workers, options=[("grpc.so_reuseport", 0)])
            self._grpc = server
            server.add_generic_rpc_handlers((service.handler(self.store),))
            port = server.add_insecure_port(f"{self._host}:{self._port}")
            server.start()
        except BaseException:
            self.stop()  # release what started (a port in use, say)
            raise
        self._address = f"{self._host}:{port}"
        return self._address

    def stop(self) -> None:
        """Stop serving: gRPC first (no new tasks), then pushes, then the JWKS."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        self._pusher.stop()
        self._jwks.stop()
        self._address = None

    def __enter__(self) -> LocalCloudTasks:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def address(self) -> str:
        """The gRPC address (``host:port``), for `CloudTasksSettings.emulator_host`."""
        if self._address is None:
            raise RuntimeError("the local Cloud Tasks server is not started; call start()")
        return self._address

    @property
    def jwks_url(self) -> str:
        """Where the token key is published (``http://host:port/certs``)."""
        return self._jwks.url

    def client(self) -> Client:
        """An official `CloudTasksClient` on a plaintext channel to this server (close
        it with ``client.transport.close()``)."""
        channel = grpc.insecure_channel(self.address)
        transport = transports().CloudTasksGrpcTransport(channel=channel)
        return tasks_v2.CloudTasksClient(transport=transport)

    # ------------------------------------------------------------------ queues
    def ensure_queue(
        self,
        name: str,
        *,
        max_dispatches_per_second: float = 0.0,
        max_burst_size: int = 0,
        max_concurrent_dispatches: int = 0,
        max_attempts: int = 0,
        min_backoff_s: float = 0.0,
        max_backoff_s: float = 0.0,
        max_doublings: int = 0,
        max_retry_duration_s: float = 0.0,
    ) -> Queue:
        """Create or reconfigure queue `name` (``projects/P/locations/L/queues/Q``)
        without a client; zeros take Cloud Tasks' defaults (see `policy`)."""
        queue = tasks_v2.Queue(
            name=name,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=max_dispatches_per_second,
                max_burst_size=max_burst_size,
                max_concurrent_dispatches=max_concurrent_dispatches,
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=max_attempts,
                min_backoff=timedelta(seconds=min_backoff_s),
                max_backoff=timedelta(seconds=max_backoff_s),
                max_doublings=max_doublings,
                max_retry_duration=timedelta(seconds=max_retry_duration_s),
            ),
        )
        return self.store.update_queue(queue, [])

    # ------------------------------------------------------------------ tests
    def mint_token(self, email: str, audience: str) -> str:
        """An ID token as a push would carry (for tests of the verifier)."""
        return self.issuer.mint(email, audience)

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults.faults

    def set_faults(self, faults: Faults) -> None:
        """Put `faults` in force from the next push on (the generator restarts)."""
        self._faults.set(faults)

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        return self.store.stats()

    def pushes(self) -> list[PushRecord]:
        """Every push so far, in send order."""
        return self.store.pushes()

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Return once every task is finished (delivered, dropped, given up or
        deleted) and no push is in flight.

        Raises:
            TimeoutError: still busy after `timeout_s` (a paused queue, a task
                scheduled far ahead, or a handler that keeps failing).
        """
        if not self.store.wait_idle(timeout_s):
            raise TimeoutError(f"the local Cloud Tasks server is still busy after {timeout_s}s")
