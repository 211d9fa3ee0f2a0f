"""The local Cloud Tasks server, driven by the official client over gRPC on loopback.

Each test starts its own server (fresh names and counters) and a loopback receiver.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from google.api_core import exceptions as google
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import field_mask_pb2

from servo.testing.cloud_tasks import (
    Faults,
    LocalCloudTasks,
    RetryPolicy,
    ServerOptions,
    TokenIssuer,
)

from .receiver import Receiver, Reply

LOCATION = "projects/p/locations/l"
QUEUE = f"{LOCATION}/queues/q"
SA = "servo-tasks@p.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()  # one RSA key for the module: key generation is the slow part


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


class Env:
    def __init__(self, server: LocalCloudTasks, receiver: Receiver) -> None:
        self.server = server
        self.receiver = receiver
        self.client = server.client()

    def task(self, name: str | None = None, **fields: object) -> tasks_v2.Task:
        http = tasks_v2.HttpRequest(url=self.receiver.url + "/push", body=b"{}")
        task = tasks_v2.Task(http_request=http, **fields)
        if name:
            task.name = f"{QUEUE}/tasks/{name}"
        return task

    def create(self, name: str | None = None, **fields: object) -> tasks_v2.Task:
        return self.client.create_task(parent=QUEUE, task=self.task(name, **fields), timeout=5)


@contextmanager
def start(
    issuer: TokenIssuer, receiver: Receiver, options: ServerOptions | None = None, **kw: object
) -> Iterator[Env]:
    with LocalCloudTasks(options, issuer=issuer, **kw) as server:  # type: ignore[arg-type]
        env = Env(server, receiver)
        try:
            yield env
        finally:
            env.client.transport.close()


@pytest.fixture
def env(issuer: TokenIssuer, receiver: Receiver) -> Iterator[Env]:
    with start(issuer, receiver, ServerOptions(min_dispatch_deadline_s=0.1)) as env:
        yield env


def fast_queue(env: Env, **limits: float) -> None:
    defaults = {"min_backoff_s": 0.05, "max_backoff_s": 1.0}
    env.server.ensure_queue(QUEUE, **{**defaults, **limits})  # type: ignore[arg-type]


def test_a_push_carries_the_cloud_tasks_headers_and_a_verifiable_token(env: Env) -> None:
    env.client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE), timeout=5)
    url = env.receiver.url + "/execute"
    oidc = tasks_v2.OidcToken(service_account_email=SA)
    http = tasks_v2.HttpRequest(
        url=url, body=b'{"a":1}', headers={"Content-Type": "application/json"}, oidc_token=oidc
    )
    created = env.client.create_task(
        parent=QUEUE, task=tasks_v2.Task(name=f"{QUEUE}/tasks/t1", http_request=http)
    )
    custom = tasks_v2.OidcToken(service_account_email=SA, audience="https://worker.example")
    http2 = tasks_v2.HttpRequest(url=url, oidc_token=custom)
    env.client.create_task(parent=QUEUE, task=tasks_v2.Task(http_request=http2))

    first, second = sorted(env.receiver.wait_for(2), key=lambda r: r.task != "t1")
    assert (first.method, first.path, first.body) == ("POST", "/execute", b'{"a":1}')
    headers = first.headers
    assert headers["x-cloudtasks-queuename"] == "q"
    assert headers["x-cloudtasks-taskname"] == "t1"
    assert headers["x-cloudtasks-taskretrycount"] == "0"
    assert headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(headers["x-cloudtasks-tasketa"]) == pytest.approx(
        created.schedule_time.timestamp(), abs=1e-3
    )
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Google-Cloud-Tasks"

    keys = jwt.PyJWKClient(env.server.jwks_url)
    token = headers["authorization"].removeprefix("Bearer ")
    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=url, issuer="https://accounts.google.com"
    )
    assert claims["email"] == SA and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 3600 and claims["sub"].isdigit()
    assert jwt.get_unverified_header(token)["kid"] == env.server.issuer.kid

    token2 = second.headers["authorization"].removeprefix("Bearer ")
    claims2 = jwt.decode(token2, key.key, algorithms=["RS256"], audience="https://worker.example")
    assert claims2["email"] == SA
    assert second.task.isdigit(), "an unnamed task gets a name from the server"
    minted = env.server.mint_token(SA, "aud")
    assert jwt.decode(minted, key.key, algorithms=["RS256"], audience="aud")["email"] == SA


def test_a_name_is_already_exists_while_the_task_lives_and_in_the_window(
    issuer: TokenIssuer, receiver: Receiver
) -> None:
    with start(issuer, receiver, ServerOptions(dedup_window_s=0.5)) as env:
        fast_queue(env)
        receiver.handle = lambda r: Reply(delay_s=0.3)
        env.create("dup")
        with pytest.raises(google.AlreadyExists):
            env.create("dup")  # the task exists (its push is in flight)
        env.server.wait_idle(5)
        with pytest.raises(google.AlreadyExists):
            env.create("dup")  # it ran: the name is kept for the window
        time.sleep(0.6)
        env.create("dup")  # the window is over
        env.server.wait_idle(5)
        stats = env.server.stats()
        assert (stats.tasks_created, stats.already_exists, stats.delivered) == (2, 2, 2)
        assert [r.task for r in receiver.received] == ["dup", "dup"]


def test_an_unknown_queue_is_not_found_unless_auto_created(
    issuer: TokenIssuer, receiver: Receiver
) -> None:
    with start(issuer, receiver) as env:
        with pytest.raises(google.NotFound):
            env.create("a")
        with pytest.raises(google.InvalidArgument):
            env.client.create_task(parent=QUEUE, task=env.task("bad.name"))
    with start(issuer, receiver, ServerOptions(auto_create_queues=True)) as env:
        env.create("a")
        env.server.wait_idle(5)
        assert env.client.get_queue(name=QUEUE).rate_limits.max_dispatches_per_second == 500


def test_schedule_time_is_honoured(env: Env) -> None:
    fast_queue(env)
    due = time.time() + 0.5
    env.create("later", schedule_time=datetime.fromtimestamp(due, UTC))
    task = env.client.get_task(name=f"{QUEUE}/tasks/later")
    assert task.schedule_time.timestamp() == pytest.approx(due, abs=1e-3)
    assert task.dispatch_count == 0
    (push,) = env.receiver.wait_for(1)
    assert push.at >= due - 0.01
    with pytest.raises(google.InvalidArgument):
        env.create("too-late", schedule_time=datetime.now(UTC) + timedelta(days=31))


def test_a_failed_push_is_retried_with_the_queues_backoff(env: Env) -> None:
    fast_queue(env, min_backoff_s=0.2, max_backoff_s=5.0)
    env.receiver.handle = lambda r: Reply(500 if len(env.receiver.received) <= 2 else 204)
    env.create("flaky")
    pushes = env.receiver.wait_for(3)
    env.server.wait_idle(5)
    assert [p.headers["x-cloudtasks-taskretrycount"] for p in pushes] == ["0", "1", "2"]
    assert [p.headers["x-cloudtasks-taskexecutioncount"] for p in pushes] == ["0", "1", "2"]
    assert pushes[1].headers["x-cloudtasks-taskpreviousresponse"] == "500"
    gaps = [b.at - a.at for a, b in itertools.pairwise(pushes)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39, gaps  # 0.2 s, then doubled
    assert env.server.stats().pushes_by_outcome == {"500": 2, "204": 1}


def test_retry_after_is_honoured_on_429(env: Env) -> None:
    fast_queue(env)
    env.receiver.handle = lambda r: (
        Reply(429, {"Retry-After": "1"}) if len(env.receiver.received) == 1 else Reply()
    )
    env.create("busy")
    first, second = env.receiver.wait_for(2)
    assert second.at - first.at >= 0.99


def test_retries_stop_when_max_attempts_are_spent(env: Env) -> None:
    fast_queue(env, max_attempts=2)
    env.receiver.handle = lambda r: Reply(503)
    env.create("doomed")
    env.server.wait_idle(5)
    assert len(env.receiver.received) == 2
    assert env.server.stats().gave_up == 1
    with pytest.raises(google.NotFound):
        env.client.get_task(name=f"{QUEUE}/tasks/doomed")


def test_the_dispatch_deadline_ends_a_slow_push(env: Env) -> None:
    fast_queue(env, min_backoff_s=0.1)
    env.receiver.handle = lambda r: Reply(delay_s=2.0 if len(env.receiver.received) == 1 else 0)
    env.create("slow", dispatch_deadline=timedelta(seconds=0.3))
    first, second = env.receiver.wait_for(2, timeout_s=5)
    assert 0.3 <= second.at - first.at < 1.9, "the retry followed the deadline, not the reply"
    env.server.wait_idle(5)
    assert [p.outcome for p in env.server.pushes()] == ["timeout", "200"]


def test_the_rate_limit_and_concurrency_limit_hold(env: Env) -> None:
    fast_queue(env, max_dispatches_per_second=20)  # burst: ceil(20 / 5) = 4
    started = time.time()
    for i in range(40):
        env.create(f"r{i}")
    env.server.wait_idle(10)
    times = sorted(r.at for r in env.receiver.received)
    assert len(times) == 40
    assert times[-1] - started >= 1.5  # (40 - 4) / 20 = 1.8 s

    env.server.ensure_queue(f"{LOCATION}/queues/narrow", max_concurrent_dispatches=2)
    env.receiver.handle = lambda r: Reply(delay_s=0.15)
    for i in range(6):
        task = env.task(f"c{i}")
        task.name = f"{LOCATION}/queues/narrow/tasks/c{i}"
        env.client.create_task(parent=f"{LOCATION}/queues/narrow", task=task)
    env.server.wait_idle(10)
    assert env.receiver.max_in_flight == 2


def delivered(issuer: TokenIssuer, faults: Faults) -> tuple[list[str], dict[str, int]]:
    receiver = Receiver()
    try:
        with start(issuer, receiver, faults=faults) as env:
            fast_queue(env)
            for i in range(20):
                env.create(f"f{i:02d}")
            env.server.wait_idle(10)
            stats = env.server.stats()
            counts = {"dropped": stats.dropped, "duplicated": stats.duplicated}
        return sorted(r.task for r in receiver.received), counts
    finally:
        receiver.close()


def test_faults_are_deterministic_by_seed(issuer: TokenIssuer) -> None:
    faults = Faults(drop=0.3, duplicate=0.3, seed=7)
    first, counts = delivered(issuer, faults)
    assert (first, counts) == delivered(issuer, faults)
    assert counts["dropped"] > 0 and counts["duplicated"] > 0, counts
    names = set(first)
    assert len(names) == 20 - counts["dropped"], "a dropped push is never retried"
    assert len(first) == len(names) + counts["duplicated"], "a duplicated push arrives twice"


def test_faults_change_at_runtime(env: Env) -> None:
    fast_queue(env)
    env.server.set_faults(Faults(drop=1.0))
    env.create("lost")
    env.server.wait_idle(5)
    assert env.receiver.received == [] and env.server.stats().dropped == 1
    env.server.set_faults(Faults(delay=1.0, delay_s=0.3))
    created = time.time()
    env.create("late")
    (push,) = env.receiver.wait_for(1)
    assert push.at - created >= 0.3 and env.server.stats().delayed == 1


def test_queues_are_updated_listed_paused_and_resumed(env: Env) -> None:
    c = env.client
    c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    with pytest.raises(google.AlreadyExists):
        c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    change = tasks_v2.Queue(
        name=QUEUE, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7)
    )
    mask = field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"])
    updated = c.update_queue(queue=change, update_mask=mask)
    assert updated.rate_limits.max_dispatches_per_second == 7
    assert updated.retry_config.max_attempts == 100, "fields outside the mask are kept"
    assert [q.name for q in c.list_queues(parent=LOCATION)] == [QUEUE]

    c.pause_queue(name=QUEUE)
    env.create("held")
    time.sleep(0.2)
    assert env.receiver.received == []
    assert [t.name for t in c.list_tasks(parent=QUEUE)] == [f"{QUEUE}/tasks/held"]
    c.resume_queue(name=QUEUE)
    env.receiver.wait_for(1)
    with pytest.raises(google.MethodNotImplemented):
        c.get_iam_policy(request={"resource": QUEUE})


def test_a_deleted_task_is_not_pushed_and_keeps_its_name(env: Env) -> None:
    fast_queue(env)
    env.create("gone", schedule_time=datetime.now(UTC) + timedelta(seconds=0.3))
    env.client.delete_task(name=f"{QUEUE}/tasks/gone")
    with pytest.raises(google.AlreadyExists):
        env.create("gone")
    env.server.wait_idle(5)
    time.sleep(0.4)
    assert env.receiver.received == [] and env.server.stats().deleted == 1


def test_backoff_follows_the_documented_schedule() -> None:
    policy = RetryPolicy(min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert [policy.backoff_s(n) for n in range(1, 10)] == [
        10, 20, 40, 80, 160, 240, 300, 300, 300,
    ]  # fmt: skip
    assert RetryPolicy(max_attempts=3).gives_up(3, 0) and not RetryPolicy().gives_up(3, 0)
    both = RetryPolicy(max_attempts=3, max_retry_duration_s=60)
    assert not both.gives_up(3, 59) and both.gives_up(3, 60) and not both.gives_up(2, 61)
    assert RetryPolicy(max_attempts=-1, max_retry_duration_s=5).gives_up(1000, 5)
    assert not RetryPolicy(max_attempts=-1).gives_up(10**6, 10**6)


def test_the_standalone_server_prints_its_addresses_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "servo.testing.cloud_tasks", "--port", "0", "--jwks-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["jwks_url"].endswith("/certs") and line["grpc"].startswith("127.0.0.1:")
        channel = grpc.insecure_channel(line["grpc"])
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE), timeout=10)
        client.transport.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_port_in_use_fails_to_start_and_a_stopped_server_restarts(
    env: Env, issuer: TokenIssuer
) -> None:
    port = int(env.server.address.rsplit(":", 1)[1])
    other = LocalCloudTasks(issuer=issuer, port=port)
    with pytest.raises(RuntimeError, match="bind"):
        other.start()
    other.stop()
    fast_queue(env)
    env.server.stop()
    env.server.start()  # the same store: queues and names survive a restart
    env.client.transport.close()
    env.client = env.server.client()
    env.create("after-restart")
    env.receiver.wait_for(1)
