"""The state of the local Cloud Tasks server: queues, tasks, names taken, counters.

One lock guards everything; gRPC handlers (many threads) and the pusher (one loop)
call in. The pusher asks `take_due` for the pushes it may start now, which applies
each queue's schedule, token bucket and concurrency limit, and reports back with
`finish`; the store then deletes the task (2xx, or retry limits spent) or schedules
its next attempt (the queue's backoff, and never before a 429/503's
``Retry-After``).

Names: a task holds its name while it exists and for `dedup_window_s` after it is
gone (ran, gave up, deleted); creating it again meanwhile is ALREADY_EXISTS.

Each due task sits in its queue's heap as ``(eta, seq, name, version)``; a
rescheduled or deleted task leaves its old entry behind, recognised as stale by
its version and skipped.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from servo.testing.cloud_tasks import names
from servo.testing.cloud_tasks._proto import HttpRequest, Queue, Task, tasks_v2
from servo.testing.cloud_tasks.errors import ApiError, Code
from servo.testing.cloud_tasks.options import ServerOptions
from servo.testing.cloud_tasks.policy import RetryPolicy, TokenBucket, fill_defaults
from servo.testing.cloud_tasks.push import Dispatch, PushResult
from servo.testing.cloud_tasks.stats import PushRecord, Stats

_RUNNING = tasks_v2.Queue.State.RUNNING
_PAUSED = tasks_v2.Queue.State.PAUSED
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PAGE_SIZE = 1000
_PRUNE_EVERY = 1000

_T = TypeVar("_T")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class _Task:
    task: Task
    queue: str
    eta: float
    version: int
    first_dispatch: float | None = None
    last_dispatch: float | None = None
    attempts: int = 0
    responses: int = 0
    previous_response: int | None = None
    in_flight: bool = False


@dataclass(slots=True)
class _Queue:
    queue: Queue
    policy: RetryPolicy
    bucket: TokenBucket
    heap: list[tuple[float, int, str, int]] = field(default_factory=list)
    in_flight: int = 0


def _copy_queue(queue: Queue) -> Queue:
    copy: Queue = tasks_v2.Queue.deserialize(tasks_v2.Queue.serialize(queue))
    return copy


def _copy_task(task: Task) -> Task:
    copy: Task = tasks_v2.Task.deserialize(tasks_v2.Task.serialize(task))
    return copy


class TaskStore:
    """Queues and tasks of one server; see the module docstring.

    Args:
        options: dedup window, deadlines and limits.
        clock: wall-clock seconds (`schedule_time` is wall-clock time).
        on_change: called (outside the lock) when tasks may have become due, so the
            pusher looks again.
    """

    def __init__(
        self,
        options: ServerOptions,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.options = options
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queues: dict[str, _Queue] = {}
        self._tasks: dict[str, _Task] = {}
        self._gone: dict[str, float] = {}  # task name -> when it may be used again
        self._seq = itertools.count()
        self._names = random.Random()
        self._side_pushes = 0
        self._creates = 0
        self._stats = Stats()
        self._pushes: deque[PushRecord] = deque(maxlen=100_000)

    # ------------------------------------------------------------------ queues
    def create_queue(self, parent: str, queue: Queue) -> Queue:
        """CreateQueue: ALREADY_EXISTS if the name is taken."""
        names.check_location(parent)
        name = names.check_queue(queue.name)
        if names.location_of(name) != parent:
            raise ApiError(Code.INVALID_ARGUMENT, f"queue {name!r} is not in {parent!r}")
        with self._lock:
            if name in self._queues:
                raise ApiError(Code.ALREADY_EXISTS, f"queue {name} already exists")
            return _copy_queue(self._add_queue(_copy_queue(queue)).queue)

    def get_queue(self, name: str) -> Queue:
        """GetQueue: NOT_FOUND if there is no such queue."""
        with self._lock:
            return _copy_queue(self._queue(name).queue)

    def list_queues(self, parent: str, page_size: int, token: str) -> tuple[list[Queue], str]:
        """ListQueues of a location: one page and the next page's token ("" at the end)."""
        names.check_location(parent)
        with self._lock:
            found = [
                q.queue for n, q in sorted(self._queues.items()) if names.location_of(n) == parent
            ]
            page, next_token = _page(found, page_size, token)
            return [_copy_queue(q) for q in page], next_token

    def update_queue(self, queue: Queue, paths: list[str]) -> Queue:
        """UpdateQueue: the fields in `paths` (all of rate and retry limits if none);
        creates the queue if it does not exist, as Cloud Tasks does."""
        name = names.check_queue(queue.name)
        with self._lock:
            entry = self._queues.get(name)
            if entry is None:
                return _copy_queue(self._add_queue(_copy_queue(queue)).queue)
            updated = _copy_queue(entry.queue)
            for path in paths or ["rate_limits", "retry_config"]:
                _copy_path(queue, updated, path)
            fill_defaults(updated)
            entry.queue = updated
            entry.policy = RetryPolicy.of(updated)
            rates = updated.rate_limits
            entry.bucket.reconfigure(rates.max_dispatches_per_second, rates.max_burst_size)
            result = _copy_queue(updated)
        self.on_change()
        return result

    def set_state(self, name: str, running: bool) -> Queue:
        """PauseQueue / ResumeQueue."""
        with self._lock:
            entry = self._queue(name)
            entry.queue.state = _RUNNING if running else _PAUSED
            result = _copy_queue(entry.queue)
        self.on_change()
        return result

    def delete_queue(self, name: str) -> None:
        """DeleteQueue: the queue and its tasks."""
        with self._idle:
            self._queue(name)
            self._purge(name)
            del self._queues[name]

    def purge_queue(self, name: str) -> Queue:
        """PurgeQueue: delete every task of the queue (their names stay taken)."""
        with self._idle:
            entry = self._queue(name)
            self._purge(name)
            return _copy_queue(entry.queue)

    def _purge(self, queue: str) -> None:
        for name in [n for n, t in self._tasks.items() if t.queue == queue]:
            self._remove(name)
            self._stats.deleted += 1
        self._queues[queue].heap.clear()
        self._idle.notify_all()

    def _add_queue(self, queue: Queue) -> _Queue:
        fill_defaults(queue)
        rates = queue.rate_limits
        bucket = TokenBucket(rates.max_dispatches_per_second, rates.max_burst_size, self._clock())
        entry = _Queue(queue, RetryPolicy.of(queue), bucket)
        self._queues[queue.name] = entry
        return entry

    def _queue(self, name: str) -> _Queue:
        entry = self._queues.get(name)
        if entry is None:
            raise ApiError(Code.NOT_FOUND, f"queue {name} does not exist; create it first")
        return entry

    # ------------------------------------------------------------------ tasks
    def create_task(self, parent: str, task: Task) -> Task:
        """CreateTask into queue `parent`; see the module docstring for names."""
        names.check_queue(parent)
        task = _copy_task(task)
        if task.name:
            names.check_task(task.name, parent)
        self._check_request(task)
        now = self._clock()
        eta = task.schedule_time.timestamp() if "schedule_time" in task else now
        if eta - now > self.options.max_schedule_ahead_s:
            raise ApiError(Code.INVALID_ARGUMENT, "schedule_time is more than 30 days ahead")
        with self._lock:
            if parent not in self._queues:
                if not self.options.auto_create_queues:
                    raise ApiError(
                        Code.NOT_FOUND, f"queue {parent} does not exist; create it first"
                    )
                self._add_queue(tasks_v2.Queue(name=parent))
            if task.name:
                if task.name in self._tasks or self._gone.get(task.name, 0.0) > now:
                    self._stats.already_exists += 1
                    raise ApiError(Code.ALREADY_EXISTS, f"task {task.name} already exists")
            else:
                task.name = f"{parent}/tasks/{self._names.randrange(10**18, 10**19)}"
            task.create_time = _utc(now)
            task.schedule_time = _utc(eta)
            entry = _Task(task, parent, eta, next(self._seq))
            self._tasks[task.name] = entry
            self._schedule(entry)
            self._stats.tasks_created += 1
            self._creates += 1
            if self._creates % _PRUNE_EVERY == 0:
                self._gone = {n: until for n, until in self._gone.items() if until > now}
            result = self._view(entry)
        self.on_change()
        return result

    def _check_request(self, task: Task) -> None:
        if "http_request" not in task or not task.http_request.url:
            raise ApiError(Code.INVALID_ARGUMENT, "task needs an http_request with a url")
        http = task.http_request
        if not http.url.startswith(("http://", "https://")):
            raise ApiError(Code.INVALID_ARGUMENT, f"url must be http(s): {http.url!r}")
        method = _method(http)
        if http.body and method not in _BODY_METHODS:
            raise ApiError(Code.INVALID_ARGUMENT, f"a {method} request cannot have a body")
        if "dispatch_deadline" in task:
            deadline = task.dispatch_deadline.total_seconds()
            low, high = self.options.min_dispatch_deadline_s, self.options.max_dispatch_deadline_s
            if not low <= deadline <= high:
                raise ApiError(
                    Code.INVALID_ARGUMENT, f"dispatch_deadline must be {low:g}s to {high:g}s"
                )

    def get_task(self, name: str) -> Task:
        """GetTask: NOT_FOUND once the task is done or deleted."""
        with self._lock:
            return self._view(self._task(name))

    def list_tasks(self, parent: str, page_size: int, token: str) -> tuple[list[Task], str]:
        """ListTasks of a queue, in creation order."""
        with self._lock:
            self._queue(parent)
            found = [t for t in self._tasks.values() if t.queue == parent]
            page, next_token = _page(found, page_size, token)
            return [self._view(t) for t in page], next_token

    def delete_task(self, name: str) -> None:
        """DeleteTask: the name stays taken for the dedup window; a push in flight
        finishes but its answer is ignored."""
        with self._idle:
            self._task(name)
            self._remove(name)
            self._stats.deleted += 1
            self._idle.notify_all()

    def run_task(self, name: str) -> Task:
        """RunTask: make the task due now (it still obeys the queue's limits)."""
        with self._lock:
            entry = self._task(name)
            if not entry.in_flight:
                entry.eta = self._clock()
                entry.version = next(self._seq)
                self._schedule(entry)
            result = self._view(entry)
        self.on_change()
        return result

    def _task(self, name: str) -> _Task:
        entry = self._tasks.get(name)
        if entry is None:
            raise ApiError(Code.NOT_FOUND, f"task {name} does not exist")
        return entry

    def _schedule(self, entry: _Task) -> None:
        heapq.heappush(
            self._queues[entry.queue].heap,
            (entry.eta, entry.version, entry.task.name, entry.version),
        )

    def _remove(self, name: str) -> None:
        self._tasks.pop(name, None)
        self._gone[name] = self._clock() + self.options.dedup_window_s

    def _view(self, entry: _Task) -> Task:
        view = _copy_task(entry.task)
        view.schedule_time = _utc(entry.eta)
        view.dispatch_count = entry.attempts
        view.response_count = entry.responses
        if entry.first_dispatch is not None:
            view.first_attempt = tasks_v2.Attempt(dispatch_time=_utc(entry.first_dispatch))
        if entry.last_dispatch is not None:
            view.last_attempt = tasks_v2.Attempt(dispatch_time=_utc(entry.last_dispatch))
        return view

    # ------------------------------------------------------------------ pushes
    def take_due(self) -> tuple[list[Dispatch], float | None]:
        """The pushes to start now, and when to look again (None: when told)."""
        now = self._clock()
        taken: list[Dispatch] = []
        wake: float | None = None
        with self._lock:
            for queue in self._queues.values():
                if queue.queue.state != _RUNNING:
                    continue
                heap = queue.heap
                limit = queue.queue.rate_limits.max_concurrent_dispatches
                while heap:
                    eta, _, name, version = heap[0]
                    entry = self._tasks.get(name)
                    if entry is None or entry.version != version or entry.in_flight:
                        heapq.heappop(heap)
                        continue
                    if eta > now:
                        wake = eta if wake is None else min(wake, eta)
                        break
                    if queue.in_flight >= limit:
                        break  # a finishing push wakes the pusher
                    if not queue.bucket.take(now):
                        ready = now + queue.bucket.wait_s(now)
                        wake = ready if wake is None else min(wake, ready)
                        break
                    heapq.heappop(heap)
                    taken.append(self._start(entry, queue, now))
        return taken, wake

    def _start(self, entry: _Task, queue: _Queue, now: float) -> Dispatch:
        entry.in_flight = True
        queue.in_flight += 1
        if entry.first_dispatch is None:
            entry.first_dispatch = now
        entry.last_dispatch = now
        entry.attempts += 1
        http = entry.task.http_request
        oidc = http.oidc_token if "oidc_token" in http else None
        deadline = (
            entry.task.dispatch_deadline.total_seconds()
            if "dispatch_deadline" in entry.task
            else self.options.default_dispatch_deadline_s
        )
        return Dispatch(
            queue=entry.queue,
            task=entry.task.name,
            url=http.url,
            method=_method(http),
            headers=tuple(http.headers.items()),
            body=http.body,
            oidc_email=oidc.service_account_email if oidc is not None else None,
            oidc_audience=(oidc.audience or None) if oidc is not None else None,
            deadline_s=deadline,
            retry_count=entry.attempts - 1,
            execution_count=entry.responses,
            previous_response=entry.previous_response,
            eta=entry.eta,
            version=entry.version,
        )

    def finish(self, dispatch: Dispatch, result: PushResult | None) -> None:
        """Record how a push ended (None: dropped by fault injection, as delivered)."""
        now = self._clock()
        with self._idle:
            queue = self._queues.get(dispatch.queue)
            if queue is not None:
                queue.in_flight -= 1
            entry = self._tasks.get(dispatch.task)
            if entry is not None and entry.version == dispatch.version:
                entry.in_flight = False
                self._settle(entry, queue, result, now)
            self._idle.notify_all()
        self.on_change()

    def _settle(
        self, entry: _Task, queue: _Queue | None, result: PushResult | None, now: float
    ) -> None:
        if result is not None and result.status is not None:
            entry.responses += 1
            entry.previous_response = result.status
        if result is None or result.succeeded:
            self._remove(entry.task.name)
            if result is not None:
                self._stats.delivered += 1
            return
        policy = queue.policy if queue is not None else RetryPolicy()
        age = now - (entry.first_dispatch or now)
        if policy.gives_up(entry.attempts, age):
            self._remove(entry.task.name)
            self._stats.gave_up += 1
            return
        eta = now + policy.backoff_s(entry.attempts)
        if result.retry_after_s is not None and result.status in (429, 503):
            eta = max(eta, now + result.retry_after_s)
        entry.eta = eta
        entry.version = next(self._seq)
        if queue is not None:
            self._schedule(entry)

    def record(self, push: PushRecord) -> None:
        """Count one push (or drop) as it happened."""
        with self._lock:
            self._pushes.append(push)
            self._stats.pushes_by_outcome[push.outcome] += 1
            if push.outcome == "dropped":
                self._stats.dropped += 1
            else:
                self._stats.pushes_attempted += 1

    def count_fault(self, *, duplicated: bool = False, delayed: bool = False) -> None:
        """Count a duplicated or delayed push."""
        with self._lock:
            self._stats.duplicated += duplicated
            self._stats.delayed += delayed

    def side_push(self, started: bool) -> None:
        """A duplicate copy started or ended (the server is not idle meanwhile)."""
        with self._idle:
            self._side_pushes += 1 if started else -1
            self._idle.notify_all()

    # ------------------------------------------------------------------ introspection
    def stats(self) -> Stats:
        """A snapshot of the counters."""
        with self._lock:
            return self._stats.copy()

    def pushes(self) -> list[PushRecord]:
        """Every push so far, in send order (the latest 100,000)."""
        with self._lock:
            return list(self._pushes)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no task is left and no push is in flight; False on timeout."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._tasks and self._side_pushes == 0, timeout_s
            )


def _method(http: HttpRequest) -> str:
    method = http.http_method
    return "POST" if method == tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED else method.name


def _page(items: list[_T], page_size: int, token: str) -> tuple[list[_T], str]:
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ApiError(Code.INVALID_ARGUMENT, f"invalid page_token {token!r}") from None
    size = min(page_size, _PAGE_SIZE) if page_size > 0 else _PAGE_SIZE
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def _copy_path(source: Queue, target: Queue, path: str) -> None:
    """Copy the field at dotted `path` (an update mask path) from `source` to `target`."""
    *parents, leaf = path.split(".")
    allowed = {"rate_limits", "retry_config", "stackdriver_logging_config"}
    if parents[0] not in allowed if parents else leaf not in allowed:
        raise ApiError(Code.INVALID_ARGUMENT, f"update_mask path {path!r} cannot be updated")
    src, dst = source, target
    for part in parents:
        src, dst = getattr(src, part), getattr(dst, part)
    try:
        setattr(dst, leaf, getattr(src, leaf))
    except (AttributeError, KeyError, TypeError) as exc:
        raise ApiError(Code.INVALID_ARGUMENT, f"unknown update_mask path {path!r}") from exc
