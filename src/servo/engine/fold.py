"""The fold: `(state, events) -> state`, idempotent and order-insensitive.

Each event is merged into a *fact* row with an operation that is idempotent,
commutative and associative (min, max, or argmin by `(emitted_at, event_id)`), so
duplicates, permutations and any split into batches give the same facts. Derived
rows (`tasks`, `dep_satisfaction`, `dispatch_outbox`, the counts of `runs`) are then
recomputed from the facts by `servo.engine.derive` for the tasks an event touched,
propagating along edges with a worklist until nothing changes. Because derived rows
are pure functions of the facts and the graph is acyclic, the result is the unique
fixpoint whatever the order of events.

Derived events (`TaskBecameReady`, `TaskSkipped`, `RunCompleted`) exist only here, as
states: `tasks.status == READY` with `ready_at`, `SKIPPED`, and `runs.completed_at`.

The attempt_id guard: worker events land on the row of the attempt_id they echo;
only the winning dispatch's row counts, so events of a stale attempt never change
status. They are counted in `FoldStats.stale_rejected`.
"""

from __future__ import annotations

import copy
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.archived import ArchivedRuns
from servo.engine.attempt_facts import earlier, set_end
from servo.engine.changes import ChangeFeed
from servo.engine.derive import (
    RESOLUTION_OF_STATUS,
    apply_task_state,
    current_attempts,
    derive_task,
    summarize_run,
)
from servo.engine.ids import cloud_task_id, dispatch_id, timer_task_id
from servo.engine.schema import AttemptRow, DepRow, OutboxRow, RunRow, TaskRow, TimerRow
from servo.errors import EngineError
from servo.observability.logging import get_logger

log = get_logger(__name__)

TaskId = tuple[str, str]  # (run_id, task_key)

#: Task statuses the anti-entropy sweep examines (`servo.engine.anti_entropy`).
_SWEPT = frozenset({s.READY, s.DISPATCHED})


@dataclass(slots=True)
class FoldStats:
    """What one `apply` call did.

    Attributes:
        events: events given.
        stale_rejected: events of an attempt that is not (or no longer) current.
        tasks_recomputed: derived task rows recomputed.
        archived_ignored: events of an archived run whose rows were not restored.
    """

    events: int = 0
    stale_rejected: int = 0
    tasks_recomputed: int = 0
    archived_ignored: int = 0


class EngineState:
    """The hot projection rows of one (tenant, workspace), with indexes for the fold.

    Hot means the runs not archived (`remove_runs`): active runs and those that ended
    recently. Events naming an archived run fold only once its rows are restored
    (`restore_runs`, which the compactor does first); `apply` ignores them otherwise
    (`FoldStats.archived_ignored`).
    """

    def __init__(
        self, tenant_id: str, workspace_id: str, archived: ArchivedRuns | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        #: The runs archived out of this state (loaded on first use).
        self.archived = ArchivedRuns() if archived is None else archived
        #: Newest successful materialization per (asset, partition) among archived runs.
        self.latest: dict[tuple[str, str], s.LatestRow] = {}
        self.tables: dict[str, dict[tuple[Any, ...], Any]] = {t.name: {} for t in s.TABLES}
        self._changes = ChangeFeed()  # the publisher's (`take_changes`)
        self._feeds: list[ChangeFeed] = [self._changes]
        # Indexes (not persisted; rebuilt by from_rows).
        self._attempts_of: dict[TaskId, list[AttemptRow]] = defaultdict(list)
        self._deps_of: dict[TaskId, list[DepRow]] = defaultdict(list)
        self._children: dict[TaskId, list[DepRow]] = defaultdict(list)
        self._timers_of: dict[TaskId, list[TimerRow]] = defaultdict(list)
        self._tasks_of_run: dict[str, list[TaskRow]] = defaultdict(list)
        self._status_counts: dict[str, Counter[str]] = defaultdict(Counter)
        #: Per run, its tasks in a status the sweep looks at (READY, DISPATCHED).
        self._swept: dict[str, dict[str, TaskRow]] = defaultdict(dict)
        self._timers_by_run: dict[str, list[TimerRow]] = defaultdict(list)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_rows(
        cls,
        tenant_id: str,
        workspace_id: str,
        tables: Mapping[str, Iterable[Any]],
        *,
        latest: Iterable[s.LatestRow] = (),
        archived: ArchivedRuns | None = None,
    ) -> EngineState:
        """Rebuild a state (and its indexes) from projection rows."""
        state = cls(tenant_id, workspace_id, archived)
        state.latest = {(r.asset_key, r.partition_key): r for r in latest}
        for name, rows in tables.items():
            spec = s.TABLES_BY_NAME[name]
            target = state.tables[name]
            for row in rows:
                target[spec.key_of(row)] = row
        for task in state.tables["tasks"].values():
            state._tasks_of_run[task.run_id].append(task)
            state._status_counts[task.run_id][task.status] += 1
            if task.status in _SWEPT:
                state._swept[task.run_id][task.task_key] = task
        for dep in state.tables["dep_satisfaction"].values():
            state._deps_of[(dep.run_id, dep.task_key)].append(dep)
            state._children[(dep.run_id, dep.upstream_task_key)].append(dep)
        for attempt in state.tables["attempts"].values():
            state._attempts_of[(attempt.run_id, attempt.task_key)].append(attempt)
        for timer in state.tables["timers"].values():
            state._timers_of[(timer.run_id, timer.task_key)].append(timer)
            state._timers_by_run[timer.run_id].append(timer)
        return state

    def copy(self) -> EngineState:
        """An independent deep copy (to retry a fold after a lost publish)."""
        return EngineState.from_rows(
            self.tenant_id,
            self.workspace_id,
            {name: [copy.copy(r) for r in rows.values()] for name, rows in self.tables.items()},
            latest=[copy.copy(r) for r in self.latest.values()],
            archived=self.archived,
        )

    def rows(self, table: str) -> Iterable[Any]:
        """All current rows of `table`."""
        return self.tables[table].values()

    def run(self, run_id: str) -> RunRow | None:
        """The run row, or None (a placeholder made by an early cancel counts as None)."""
        row: RunRow | None = self.tables["runs"].get((run_id,))
        return row if row is not None and row.request_event_id else None

    def tasks_of(self, run_id: str) -> list[TaskRow]:
        """The run's task rows, in plan order."""
        return list(self._tasks_of_run.get(run_id, ()))

    def task(self, run_id: str, task_key: str) -> TaskRow | None:
        """One task row, or None."""
        row: TaskRow | None = self.tables["tasks"].get((run_id, task_key))
        return row

    def attempts_of(self, run_id: str, task_key: str) -> list[AttemptRow]:
        """The task's attempt rows (stale ones included), in no particular order."""
        return list(self._attempts_of.get((run_id, task_key), ()))

    def current_attempt(self, task: TaskRow) -> AttemptRow | None:
        """The attempt row of the task's current attempt, or None."""
        if task.attempt_id is None:
            return None
        key = (task.run_id, task.task_key, task.attempt, task.attempt_id)
        row: AttemptRow | None = self.tables["attempts"].get(key)
        return row

    def deps_of(self, run_id: str, task_key: str) -> list[DepRow]:
        """The task's edges, in plan order."""
        return list(self._deps_of.get((run_id, task_key), ()))

    def outbox(self, dispatch: str) -> OutboxRow | None:
        """The outbox row of a dispatch id, or None."""
        row: OutboxRow | None = self.tables["dispatch_outbox"].get((dispatch,))
        return row

    def status_counts(self, run_id: str) -> Mapping[str, int]:
        """How many of the run's tasks are in each status (kept by the fold)."""
        return self._status_counts.get(run_id, Counter())

    def timer(self, timer_id: str) -> TimerRow | None:
        """One timer row, or None."""
        row: TimerRow | None = self.tables["timers"].get((timer_id,))
        return row

    def timers(self) -> Iterable[TimerRow]:
        """Every timer row."""
        return self.tables["timers"].values()

    def timers_of_run(self, run_id: str) -> list[TimerRow]:
        """The run's timers (indexed: no scan of its tasks or of other runs')."""
        return list(self._timers_by_run.get(run_id, ()))

    def swept_tasks(self, run_id: str | None = None) -> list[TaskRow]:
        """The tasks, of `run_id` or of every run, that the sweep looks at: READY or
        DISPATCHED (indexed, so a sweep costs the work in flight, not the run's size)."""
        if run_id is not None:
            return list(self._swept.get(run_id, {}).values())
        return [task for tasks in self._swept.values() for task in tasks.values()]

    def follow(self) -> ChangeFeed:
        """A change feed of this state: rows changed from now on, for one reader."""
        feed = ChangeFeed()
        self._feeds.append(feed)
        return feed

    def take_changes(self) -> dict[str, list[Any]]:
        """Rows changed since the last call, per table (every table present)."""
        tables = self.tables
        taken = self._changes.take()
        return {name: [tables[name][key] for key in taken.get(name, ())] for name in tables}

    def _touch(self, table: str, key: tuple[Any, ...]) -> None:
        for feed in self._feeds:
            feed.add(table, key)

    def remove_runs(self, run_ids: Collection[str]) -> dict[str, list[Any]]:
        """Take the rows of `run_ids` out of the state (to archive them); returns them
        per run table. One pass over each hot table, however many runs leave."""
        gone = set(run_ids)
        removed: dict[str, list[Any]] = {}
        for spec in s.RUN_TABLES:
            table = self.tables[spec.name]
            keys = [key for key, row in table.items() if row.run_id in gone]
            removed[spec.name] = [table.pop(key) for key in keys]
            for feed in self._feeds:
                feed.discard(spec.name, keys)
        for index in (self._attempts_of, self._deps_of, self._children, self._timers_of):
            for tid in [tid for tid in index if tid[0] in gone]:
                del index[tid]
        for run_id in gone:
            self._tasks_of_run.pop(run_id, None)
            self._status_counts.pop(run_id, None)
            self._swept.pop(run_id, None)
            self._timers_by_run.pop(run_id, None)
        self.archived.add((r.run_id, r.cancel_requested_at is not None) for r in removed["runs"])
        return removed

    def restore_runs(self, rows: Mapping[str, Iterable[Any]]) -> None:
        """Bring archived runs back (their rows per run table, as archived) so that
        events naming them fold as they would have; every row counts as changed, so
        the next publish writes it again wherever the run then belongs."""
        restored: set[str] = set()
        for name, table_rows in rows.items():
            spec = s.TABLES_BY_NAME[name]
            table = self.tables[name]
            for row in table_rows:
                key = spec.key_of(row)
                table[key] = row
                restored.add(row.run_id)
                self._touch(name, key)
                if name == "tasks":
                    self._tasks_of_run[row.run_id].append(row)
                    self._status_counts[row.run_id][row.status] += 1
                    if row.status in _SWEPT:
                        self._swept[row.run_id][row.task_key] = row
                elif name == "dep_satisfaction":
                    self._deps_of[(row.run_id, row.task_key)].append(row)
                    self._children[(row.run_id, row.upstream_task_key)].append(row)
                elif name == "attempts":
                    self._attempts_of[(row.run_id, row.task_key)].append(row)
                elif name == "timers":
                    self._timers_of[(row.run_id, row.task_key)].append(row)
                    self._timers_by_run[row.run_id].append(row)
        self.archived.discard(restored)

    # ------------------------------------------------------------------- apply
    def apply(self, events: Iterable[ev.Event]) -> FoldStats:
        """Fold `events` into the state.

        Raises:
            EngineError: an event belongs to another tenant or workspace.
        """
        stats = FoldStats()
        touched: set[TaskId] = set()
        touched_runs: set[str] = set()
        runs = self.tables["runs"]
        for event in events:
            stats.events += 1
            if event.tenant_id != self.tenant_id or event.workspace_id != self.workspace_id:
                raise EngineError(
                    f"event {event.event_id} belongs to {event.tenant_id}/{event.workspace_id}, "
                    f"not {self.tenant_id}/{self.workspace_id}"
                )
            if (event.run_id,) not in runs and event.run_id in self.archived:
                stats.archived_ignored += 1
                continue
            payload = event.payload
            if isinstance(payload, ev.RunRequested):
                self._run_requested(event, payload, touched)
            elif isinstance(payload, ev.RunCancelRequested):
                self._cancel_requested(event, touched)
            elif isinstance(payload, ev.TimerRequested | ev.TimerFired):
                self._timer(event, payload, touched)
            else:
                if self._is_stale(event):
                    stats.stale_rejected += 1
                self._attempt_fact(event, payload)
                touched.add((event.run_id, event.task_key or ""))
            touched_runs.add(event.run_id)
        stats.tasks_recomputed = self._propagate(touched)
        for run_id in touched_runs:
            self._derive_run(run_id)
        return stats

    # ------------------------------------------------------------ fact merges
    def _run_requested(
        self, event: ev.Event, payload: ev.RunRequested, touched: set[TaskId]
    ) -> None:
        runs = self.tables["runs"]
        run = runs.get((event.run_id,))
        if run is not None and not run.request_event_id:
            # A placeholder made by a cancel folded before the request: complete it.
            run.request_event_id, run.requested_at = event.event_id, event.emitted_at
            run.idempotency_key = payload.idempotency_key
            run.selection, run.defs_source = payload.selection, payload.defs_source
            run.code_version = payload.code_version
            self._touch("runs", (event.run_id,))
        elif run is not None:
            if run.request_event_id != event.event_id:
                log.error(
                    "fold.conflicting_run_request",
                    tenant_id=self.tenant_id,
                    run_id=event.run_id,
                    kept=run.request_event_id,
                    other=event.event_id,
                )
                if earlier(event.order_key, (run.requested_at, run.request_event_id)):
                    run.request_event_id, run.requested_at = event.event_id, event.emitted_at
                    run.idempotency_key = payload.idempotency_key
                    run.selection, run.defs_source = payload.selection, payload.defs_source
                    run.code_version = payload.code_version
                    self._touch("runs", (event.run_id,))
            else:
                return
        else:
            run = RunRow(
                run_id=event.run_id,
                tenant_id=event.tenant_id,
                workspace_id=event.workspace_id,
                request_event_id=event.event_id,
                requested_at=event.emitted_at,
                idempotency_key=payload.idempotency_key,
                selection=payload.selection,
                defs_source=payload.defs_source,
                code_version=payload.code_version,
            )
            runs[(event.run_id,)] = run
            self._touch("runs", (event.run_id,))
        tasks = self.tables["tasks"]
        deps = self.tables["dep_satisfaction"]
        for planned in payload.tasks:
            tkey = (event.run_id, planned.task_key)
            if tkey not in tasks:
                task = TaskRow(
                    run_id=event.run_id,
                    task_key=planned.task_key,
                    asset_key=planned.asset_key,
                    partition_key=planned.partition_key,
                    max_attempts=planned.max_attempts,
                    retry=None if planned.retry is None else planned.retry.to_json(),
                    timeout_s=planned.timeout_s,
                    pinned_inputs=(
                        json.dumps([list(p) for p in planned.pinned_inputs])
                        if planned.pinned_inputs
                        else None
                    ),
                )
                tasks[tkey] = task
                self._tasks_of_run[event.run_id].append(task)
                self._status_counts[event.run_id][task.status] += 1
                self._touch("tasks", tkey)
            for upstream, dep_type in planned.deps:
                dkey = (event.run_id, planned.task_key, upstream)
                if dkey in deps:
                    continue
                dep = DepRow(event.run_id, planned.task_key, upstream, dep_type)
                deps[dkey] = dep
                self._deps_of[tkey].append(dep)
                self._children[(event.run_id, upstream)].append(dep)
                self._touch("dep_satisfaction", dkey)
                touched.add((event.run_id, upstream))
            tasks[tkey].deps_total = len(self._deps_of[tkey])
            touched.add(tkey)

    def _cancel_requested(self, event: ev.Event, touched: set[TaskId]) -> None:
        run = self.tables["runs"].get((event.run_id,))
        if run is None:
            # Cancel before the request was folded: keep the fact on a placeholder
            # run that the RunRequested will complete.
            run = RunRow(event.run_id, event.tenant_id, event.workspace_id, "", 0)
            self.tables["runs"][(event.run_id,)] = run
        if run.cancel_requested_at is None or event.emitted_at < run.cancel_requested_at:
            run.cancel_requested_at = event.emitted_at
            self._touch("runs", (event.run_id,))
            touched.update((t.run_id, t.task_key) for t in self._tasks_of_run[event.run_id])

    def _timer(
        self, event: ev.Event, payload: ev.TimerRequested | ev.TimerFired, touched: set[TaskId]
    ) -> None:
        timers = self.tables["timers"]
        key = (payload.timer_id,)
        timer = timers.get(key)
        if timer is None:
            timer = TimerRow(
                timer_id=payload.timer_id,
                cloud_task_id=timer_task_id(payload.timer_id),
                run_id=event.run_id,
                task_key=event.task_key or "",
                attempt=event.attempt or 0,
                kind=s.KIND_NOT_YET_KNOWN,
                due_at=0,
                request_event_id="",
                requested_at=0,
            )
            timers[key] = timer
            self._timers_of[(event.run_id, timer.task_key)].append(timer)
            self._timers_by_run[event.run_id].append(timer)
        if isinstance(payload, ev.TimerRequested):
            if earlier(
                event.order_key, (timer.requested_at or None, timer.request_event_id or None)
            ):
                timer.kind, timer.due_at = payload.kind, payload.due_at
                timer.request_event_id, timer.requested_at = event.event_id, event.emitted_at
                self._touch("timers", key)
        elif timer.fired_at is None or event.emitted_at < timer.fired_at:
            timer.fired_at = event.emitted_at
            self._touch("timers", key)
        status = s.TIMER_FIRED if timer.fired_at is not None else s.TIMER_SCHEDULED
        if timer.status != status:
            timer.status = status
            self._touch("timers", key)
        touched.add((event.run_id, timer.task_key))

    def _is_stale(self, event: ev.Event) -> bool:
        """Whether a worker/attempt event targets an attempt that is not current."""
        if isinstance(event.payload, ev.DispatchRequested):
            return False
        task = self.tables["tasks"].get((event.run_id, event.task_key))
        if task is None or task.attempt == 0:
            return False  # cannot judge yet; the fact is kept and judged at derivation
        if event.attempt != task.attempt or event.attempt_id != task.attempt_id:
            return True
        if isinstance(event.payload, ev.TaskFinished | ev.AttemptAbandoned):
            key = (event.run_id, event.task_key, event.attempt, event.attempt_id)
            row = self.tables["attempts"].get(key)
            if row is None or row.end_event_id in (None, event.event_id):
                return False
            return not earlier(event.order_key, (row.end_at, row.end_event_id))
        return False

    def _attempt_fact(self, event: ev.Event, payload: ev.Payload) -> None:
        assert event.task_key is not None and event.attempt is not None  # checked by Event
        assert event.attempt_id is not None
        key = (event.run_id, event.task_key, event.attempt, event.attempt_id)
        attempts = self.tables["attempts"]
        row = attempts.get(key)
        if row is None:
            row = AttemptRow(event.run_id, event.task_key, event.attempt, event.attempt_id)
            attempts[key] = row
            self._attempts_of[(event.run_id, event.task_key)].append(row)
        at = event.emitted_at
        changed = False
        if isinstance(payload, ev.DispatchRequested):
            if earlier(event.order_key, (row.dispatch_at, row.dispatch_event_id)):
                row.dispatch_at, row.dispatch_event_id = at, event.event_id
                changed = True
        elif isinstance(payload, ev.DispatchEnqueued):
            if row.enqueued_at is None or at < row.enqueued_at:
                row.enqueued_at, changed = at, True
        elif isinstance(payload, ev.TaskStarted):
            # Earliest start wins; a tie (two workers, one microsecond) goes to the
            # smaller worker id, so no order of arrival can change the result.
            started = (at, payload.worker_id)
            if row.started_at is None or started < (row.started_at, row.worker_id or ""):
                row.started_at, row.worker_id, changed = at, payload.worker_id, True
            if row.heartbeat_at is None or at > row.heartbeat_at:
                row.heartbeat_at, changed = at, True
        elif isinstance(payload, ev.TaskHeartbeat):
            if row.heartbeat_at is None or at > row.heartbeat_at:
                row.heartbeat_at, changed = at, True
        elif isinstance(payload, ev.TaskFinished | ev.AttemptAbandoned):
            if earlier(event.order_key, (row.end_at, row.end_event_id)):
                set_end(row, event, payload)
                changed = True
        else:  # pragma: no cover - every payload type is handled above
            raise EngineError(f"event type {event.type} cannot be folded into an attempt")
        if changed:
            self._touch("attempts", key)

    # -------------------------------------------------------------- derivation
    def _propagate(self, touched: set[TaskId]) -> int:
        """Recompute touched tasks, then downstream tasks whose edges changed."""
        tasks = self.tables["tasks"]
        runs = self.tables["runs"]
        work = list(touched)
        queued = set(work)
        recomputed = 0
        while work:
            tid = work.pop()
            queued.discard(tid)
            task = tasks.get(tid)
            run = runs.get((tid[0],))
            if task is None or run is None or not run.request_event_id:
                continue
            recomputed += 1
            old_status = task.status
            state = derive_task(
                task,
                attempts=self._attempts_of.get(tid, ()),
                deps=self._deps_of.get(tid, []),
                timers=self._timers_of.get(tid, ()),
                run_requested_at=run.requested_at,
                cancel_requested_at=run.cancel_requested_at,
            )
            if apply_task_state(task, state):
                self._touch("tasks", tid)
            self._derive_outbox(task)
            if task.status != old_status:
                counts = self._status_counts[tid[0]]
                counts[old_status] -= 1
                counts[task.status] += 1
                if task.status in _SWEPT:
                    self._swept[tid[0]][tid[1]] = task
                elif old_status in _SWEPT:
                    self._swept[tid[0]].pop(tid[1], None)
            resolution = RESOLUTION_OF_STATUS.get(task.status)
            resolved_at = task.finished_at if resolution is not None else None
            for dep in self._children.get(tid, ()):
                if dep.resolution == resolution and dep.resolved_at == resolved_at:
                    continue
                dep.resolution, dep.resolved_at = resolution, resolved_at
                self._touch("dep_satisfaction", (dep.run_id, dep.task_key, dep.upstream_task_key))
                child = (dep.run_id, dep.task_key)
                if child not in queued:
                    queued.add(child)
                    work.append(child)
        return recomputed

    def _derive_outbox(self, task: TaskRow) -> None:
        """One outbox row per winning dispatch of the task's attempts."""
        tid = (task.run_id, task.task_key)
        outbox = self.tables["dispatch_outbox"]
        winners = current_attempts(self._attempts_of.get(tid, ()))
        # A dispatch after the task succeeded is stale: never to be sent.
        done_at = task.attempt if task.status == s.SUCCEEDED else None
        for number, attempt in winners.items():
            did = dispatch_id(self.tenant_id, self.workspace_id, task.run_id, task.task_key, number)
            if attempt.end_event_id is not None or (done_at is not None and number > done_at):
                status = s.OUTBOX_COMPLETED
            elif attempt.enqueued_at is not None:
                status = s.OUTBOX_ENQUEUED
            else:
                status = s.OUTBOX_PENDING
            requested_at = attempt.dispatch_at or 0
            found: OutboxRow | None = outbox.get((did,))
            if (
                found is not None
                and found.status == status
                and found.attempt_id == attempt.attempt_id
                and found.requested_at == requested_at
                and found.enqueued_at == attempt.enqueued_at
            ):
                continue
            outbox[(did,)] = OutboxRow(
                dispatch_id=did,
                cloud_task_id=cloud_task_id(did) if found is None else found.cloud_task_id,
                run_id=task.run_id,
                task_key=task.task_key,
                attempt=number,
                attempt_id=attempt.attempt_id,
                asset_key=task.asset_key,
                partition_key=task.partition_key,
                status=status,
                requested_at=requested_at,
                enqueued_at=attempt.enqueued_at,
            )
            self._touch("dispatch_outbox", (did,))

    def _derive_run(self, run_id: str) -> None:
        run = self.tables["runs"].get((run_id,))
        if run is None or not run.request_event_id:
            return
        if summarize_run(run, self._status_counts[run_id], self._tasks_of_run[run_id]):
            self._touch("runs", (run_id,))
