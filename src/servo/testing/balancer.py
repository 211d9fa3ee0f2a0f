"""A loopback TCP load balancer: Cloud Run's front end for several local workers.

`Balancer` accepts TCP connections on 127.0.0.1 and hands each one, round robin, to
one of its targets (``servo serve`` worker processes), copying bytes both ways until
either side closes. It knows nothing of HTTP, so keep-alive connections stay on the
target that got them, as they do behind Cloud Run::

    with Balancer([("127.0.0.1", 8081), ("127.0.0.1", 8082)]) as balancer:
        host, port = balancer.address      # point the queues' push URL here
        balancer.set_targets([("127.0.0.1", 8082)])   # a worker went away

A target that refuses the connection (or does not accept it within
``connect_timeout``) is skipped for the next one; when every target fails, the
client's connection is closed without a byte. The next connection starts after the
target that was used, so a dead target does not double the load of its successor.

Threads: one asyncio loop in a daemon thread serves every connection; `stop` closes
the listening socket and every open connection, then ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType

__all__ = ["Balancer", "Target"]

#: A target's (host, port).
Target = tuple[str, int]

_CHUNK = 64 * 1024


class Balancer:
    """A round-robin TCP balancer on loopback; see the module docstring.

    Args:
        targets: the (host, port) pairs to spread connections over.
        host: the address to listen on.
        port: the port to listen on (0: any free one).
        connect_timeout: seconds to wait for a target to accept before trying the next.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
    ) -> None:
        self._targets: tuple[Target, ...] = tuple(targets)
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._address: Target | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> Target:
        """The (host, port) the balancer listens on.

        Raises:
            RuntimeError: the balancer is not running.
        """
        if self._address is None:
            raise RuntimeError("the balancer is not running: call start() first")
        return self._address

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets new connections are spread over."""
        return self._targets

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Spread new connections over `targets`; open connections are left alone."""
        self._targets = tuple(targets)

    def start(self) -> Target:
        """Listen and serve in a background thread; returns the (host, port) listened on.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._address is not None:
            return self._address
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="servo-balancer", daemon=True)
        thread.start()
        try:
            server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._loop, self._thread, self._server = loop, thread, server
        host, port = server.sockets[0].getsockname()[:2]
        self._address = (str(host), int(port))
        return self._address

    def stop(self) -> None:
        """Stop listening, close every open connection and end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = self._server = self._address = None

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, self._host, self._port)

    async def _shutdown(self) -> None:
        server = self._server
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _candidates(self) -> list[tuple[int, Target]]:
        """Every target with its index, starting at the round-robin position."""
        targets = self._targets
        if not targets:
            return []
        first = self._next % len(targets)
        order = [*range(first, len(targets)), *range(first)]
        return [(index, targets[index]) for index in order]

    async def _connect(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Open a connection to the next target that accepts one; None if none does."""
        for index, (host, port) in self._candidates():
            try:
                streams = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self._connect_timeout
                )
            except (OSError, TimeoutError):
                continue
            self._next = index + 1
            return streams
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # always, for a connection callback: `stop` cancels it
            self._handlers.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            upstream_reader, upstream_writer = upstream
            self._writers.add(upstream_writer)
            await asyncio.gather(
                _pipe(reader, upstream_writer, writer),
                _pipe(upstream_reader, writer, upstream_writer),
            )
        except asyncio.CancelledError:
            # `stop` ended the connection. The task ends normally: Python 3.11's
            # `start_server` asks a finished connection task for its exception, which
            # raises (and is logged) for a cancelled one.
            pass
        finally:
            for side in (writer, upstream_writer):
                if side is not None:
                    self._writers.discard(side)
                    await _close(side)
            if task is not None:
                self._handlers.discard(task)

    def __enter__(self) -> Balancer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: asyncio.StreamWriter
) -> None:
    """Copy `reader` to `writer` until end of stream, then half-close `writer`.

    On a broken connection both `writer` and `source` (the writer of `reader`'s
    connection) are closed, which ends the opposite copy too.
    """
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except OSError:
        writer.close()
        source.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
