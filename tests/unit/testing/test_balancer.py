"""`Balancer`: round robin over loopback targets, dead targets skipped, `stop` closes."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from servo.testing.balancer import Balancer, Target


class _NameHandler(BaseHTTPRequestHandler):
    """Answers every GET with the server's name."""

    protocol_version = "HTTP/1.1"  # keep-alive unless the client asks to close

    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[Target]]:
    """Two HTTP servers on loopback, answering "a" and "b"."""
    started = []
    for name in ("a", "b"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _NameHandler)
        server.name = name  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, thread))
    try:
        yield [("127.0.0.1", server.server_address[1]) for server, _ in started]
    finally:
        for server, thread in started:
            server.shutdown()
            server.server_close()
            thread.join()


def _dead_target() -> Target:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return ("127.0.0.1", sock.getsockname()[1])


def _get(address: Target) -> str:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_connections_go_round_robin(servers: list[Target]) -> None:
    with Balancer(servers) as balancer:
        assert [_get(balancer.address) for _ in range(6)] == ["a", "b"] * 3


def test_a_keep_alive_connection_stays_on_its_target(servers: list[Target]) -> None:
    with Balancer(servers) as balancer:
        connection = http.client.HTTPConnection(*balancer.address, timeout=10)
        try:
            answers = []
            for _ in range(3):
                connection.request("GET", "/")
                answers.append(connection.getresponse().read().decode())
        finally:
            connection.close()
        assert answers == ["a", "a", "a"]
        assert _get(balancer.address) == "b"


def test_a_dead_target_is_skipped(servers: list[Target]) -> None:
    a, b = servers
    with Balancer([a, _dead_target(), b]) as balancer:
        assert [_get(balancer.address) for _ in range(4)] == ["a", "b", "a", "b"]


def test_targets_can_change_while_running(servers: list[Target]) -> None:
    a, b = servers
    with Balancer([a]) as balancer:
        assert _get(balancer.address) == "a"
        balancer.set_targets([b])
        assert balancer.targets == (b,)
        assert [_get(balancer.address) for _ in range(2)] == ["b", "b"]


def test_with_every_target_dead_the_client_is_closed() -> None:
    with Balancer([_dead_target(), _dead_target()]) as balancer:
        with socket.create_connection(balancer.address, timeout=10) as client:
            assert client.recv(1) == b""
        balancer.set_targets([])
        with socket.create_connection(balancer.address, timeout=10) as client:
            assert client.recv(1) == b""


def test_stop_closes_the_listener_and_open_connections(servers: list[Target]) -> None:
    balancer = Balancer(servers)
    address = balancer.start()
    assert balancer.start() == address
    client = socket.create_connection(address, timeout=10)
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in client.recv(1024)
        balancer.stop()
        while client.recv(1024):  # the rest of the answer may still be buffered,
            pass  # then the connection ends (a socket timeout here fails the test)
    finally:
        client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=10).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = balancer.address
    balancer.stop()  # idempotent
