"""The request-driven reconciler of the scale-out modes: one workspace, no loop.

In the serverless and Celery modes nothing runs between requests: a worker's report
(the ledger objects it wrote), a due timer or a periodic sweep each becomes one call
here, which

1. makes sure its state is the newest published one — the manifest generation is
   probed (hint + forward probe) and the state reloaded when another instance
   published since; the state is bounded by active work (ended runs are archived,
   ADR 0022), so a reload costs what the active runs cost;
2. runs one reconcile step (`servo.engine.reconcile`) over the reported objects,
   the due timer, or the sweep (which also folds ledger objects no report named:
   a lost notification);
3. applies the step's effects — dispatches through the injected `Dispatcher`, timers
   through the injected `TimerDelivery` — and writes their `DispatchEnqueued`
   outcomes with the publish that ends the call.

Reports reach this reconciler after a delay the engine cannot see (a queue between
the worker and it), so it judges due timers against a watermark `report_lag_us`
behind its clock: a heartbeat check or a timeout fires only once every report made
before its due time should have arrived; until then the timer is delivered again
when the watermark will have passed it.

Calls for one workspace are serialised within the process; instances racing on one
workspace are kept correct by the manifest's compare-and-swap (a lost publish
re-folds on the winner's state) and the attempt_id guard, at the price of a wasted
dispatch now and then: deploy one reconciler instance per workspace set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings
from servo.engine.compactor import Compactor
from servo.engine.controllers.timers import TimerSettings
from servo.engine.effects import Dispatcher, Effects, TimerDelivery, apply_effects
from servo.engine.ids import new_ulid, now_us
from servo.engine.ledger import LedgerReader, LedgerWriter, batch_path, batch_seq, ledger_prefix
from servo.engine.manifest import ManifestStore
from servo.engine.reconcile import Holding, Inputs, Reconciler
from servo.engine.snapshot import PublishListener
from servo.errors import ObjectNotFoundError, ServoError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.runner import recovery
from servo.runner.publishing import Publishing
from servo.runner.requests import request_builder
from servo.storage.base import ObjectStore

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

#: Ledger batch numbers read at once when probing for batches nobody reported yet.
PROBE_WINDOW = 8
#: Outcomes of recent report batches kept for the callers still waiting on them.
_KEPT_RESULTS = 64

STEPS = metrics.counter(
    "servo_reconciler_steps_total", "Request-driven reconcile steps, by trigger.", ["trigger"]
)
STEP_SECONDS = metrics.histogram(
    "servo_reconciler_step_duration_seconds", "Time of one request-driven step.", ["trigger"]
)
RELOADS = metrics.counter(
    "servo_reconciler_state_reloads_total",
    "Reloads of a workspace's state because another instance published.",
)
STEP_ERRORS = metrics.counter(
    "servo_reconciler_step_errors_total", "Request-driven steps that failed.", ["error_type"]
)


def new_pool() -> ThreadPoolExecutor:
    """Threads for the object-store reads and queue calls of reconcile steps (share
    one between the workspaces a process serves)."""
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="servo-reconcile")


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    """How a request-driven reconciler judges time.

    Attributes:
        report_lag_us: how far behind its clock the reconciler assumes every report
            has arrived (the queue's delivery delay, with margin).
        publish_interval_s: longest time folded reports stay unpublished (a run
            that ends is published at once).
        heartbeat_timeout_us: an attempt silent this long is given up (redelivered).
        sweep: deadlines of the anti-entropy sweep.
        max_l0_files: delta files of one table that trigger a merge.
    """

    report_lag_us: int = 2_000_000
    heartbeat_timeout_us: int = 60_000_000
    publish_interval_s: float = 1.0
    sweep: SweepSettings = field(default_factory=SweepSettings)
    max_l0_files: int = 16


@dataclass(frozen=True, slots=True)
class StepSummary:
    """What one call did (the HTTP answer and the tests read it).

    Attributes:
        generation: the manifest generation published at the end.
        enqueued: dispatches handed to the queue.
        armed: timers handed to the timer delivery.
        stopped: attempts the engine ended.
        swept: tasks the sweep examined (0: no sweep).
    """

    generation: int
    enqueued: int
    armed: int
    stopped: int
    swept: int = 0


class WorkspaceReconciler:
    """Reconcile steps of one (tenant, workspace) on request; see the module docstring.

    Args:
        store: ledger and projections.
        defs: the definitions the runs were planned from (dispatch requests name them).
        dispatcher: hands requests to the workers (Cloud Tasks, Celery).
        timers: delivers due timers back to `fire`.
        clock: now, in epoch µs.
        new_id: fresh event and attempt ids.
        monotonic: seconds, for the publish interval.
        pool: threads for a step's reads and queue calls (default: its own).
        on_publish: told every snapshot published (a read model such as the
            catalog); one that raises is logged and counted, and the step goes on.
    """

    def __init__(
        self,
        store: ObjectStore,
        tenant_id: str,
        workspace_id: str,
        defs: Definitions,
        dispatcher: Dispatcher,
        timers: TimerDelivery,
        settings: ReconcilerSettings | None = None,
        *,
        clock: Callable[[], int] = now_us,
        new_id: Callable[[], str] = new_ulid,
        monotonic: Callable[[], float] = time.monotonic,
        pool: Executor | None = None,
        on_publish: PublishListener | None = None,
    ) -> None:
        self._store = store
        # Reports made before this instance listened may still wait in the queue
        # (it was down, or another instance was): the sweep judges starts from here.
        self._since = clock()
        self._publishing = Publishing(0.0, monotonic=monotonic)
        if on_publish is not None:
            self._publishing.listeners.append(on_publish)
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        self._defs = defs
        self._dispatcher = dispatcher
        self._timers = timers
        self.settings = settings or ReconcilerSettings()
        self._clock = clock
        self._new_id = new_id
        self._manifests = ManifestStore(store, tenant_id, workspace_id)
        self._reader = LedgerReader(store)
        self._prefix = ledger_prefix(tenant_id, workspace_id)
        self._lock = threading.Lock()
        self._reconciler: Reconciler | None = None
        # Group commit of reports (`reconcile`): paths waiting for the next step, the
        # number of the batch they will be folded in, and the outcome of recent ones.
        self._gathering = threading.Lock()
        self._pending: dict[str, None] = {}
        self._pending_events: dict[str, ev.Event] = {}
        self._open_batch = 0
        self._results: dict[int, StepSummary | ServoError | OSError] = {}
        # Deferred publishes: when the last one was, whether the state holds more.
        self._monotonic = monotonic
        self._published_at = monotonic()
        self._dirty = False
        self._flusher: threading.Timer | None = None
        self._outcomes: list[ev.Event] = []
        self._checked_at = -1e9  # when the manifest generation was last probed
        #: Threads for the object-store reads and queue calls of one step.
        self._pool = pool if pool is not None else new_pool()
        self._ledger = LedgerWriter(store, tenant_id, workspace_id, probe=self._pool.map)

    # ------------------------------------------------------------------ public
    def reconcile(self, paths: Sequence[str], events: Sequence[ev.Event] = ()) -> StepSummary:
        """Fold the ledger objects a writer reported, write and fold the events it
        reported (ADR 0025), and act on what changed.

        Concurrent calls are committed as a group: what is reported while a step
        runs is folded together by the next step, and every caller whose report it
        folded gets its summary (or its error), so a burst of reports costs a few
        steps, not one step and one publish each. A caller's events are in the
        ledger when it returns.
        """
        with self._gathering:
            self._pending.update(dict.fromkeys(paths))
            self._pending_events.update((e.event_id, e) for e in events)
            mine = self._open_batch
        with self._lock:
            with self._gathering:
                done = self._results.get(mine) if mine < self._open_batch else None
                if done is None:
                    taken = list(self._pending)
                    reported = list(self._pending_events.values())
                    self._pending.clear()
                    self._pending_events.clear()
                    self._open_batch += 1
            if done is None:
                try:
                    done = self._locked_call(
                        "reconcile", Inputs(reported=reported), taken, recover=False
                    )
                except (ServoError, OSError) as exc:
                    done = exc
                    with self._gathering:  # folded by the next step (the callers'
                        self._pending.update(dict.fromkeys(taken))  # retries too)
                        self._pending_events.update((e.event_id, e) for e in reported)
                self._results[mine] = done
                self._results.pop(mine - _KEPT_RESULTS, None)
        if isinstance(done, BaseException):
            raise done
        return done

    def fire(self, timer_id: str) -> StepSummary:
        """A timer's delivery: fire it if the state is fresh enough, else deliver it
        again later."""
        return self._call("timer", Inputs(due=[timer_id]))

    def fire_due(self) -> StepSummary:
        """A wake-up of the workspace: fire every timer due by now (those the state is
        fresh enough to judge; the others are armed again after the report lag)."""
        with self._lock:
            reconciler = self._fresh()
            now = self._clock()
            due = [t.timer_id for t in reconciler.state.timers()
                   if t.status == s.TIMER_SCHEDULED and t.due_at <= now]  # fmt: skip
            return self._locked_call("timer", Inputs(due=due), (), recover=False)

    def sweep(self) -> StepSummary:
        """Anti-entropy: fold ledger objects no report named, drive stuck work, and
        fire overdue timers at once (their queued delivery may be lost)."""
        return self._call("sweep", Inputs(sweep=Holding(listening_since=self._since)),
                          recover=True)  # fmt: skip

    def state_generation(self) -> int:
        """The manifest generation the in-memory state holds (0: none loaded)."""
        reconciler = self._reconciler
        if reconciler is None or reconciler.compactor.manifest is None:
            return 0
        return reconciler.compactor.manifest.generation

    # ------------------------------------------------------------------ a call
    def _call(
        self,
        trigger: str,
        inputs: Inputs,
        *,
        paths: Sequence[str] = (),
        recover: bool = False,
    ) -> StepSummary:
        with self._lock:
            return self._locked_call(trigger, inputs, paths, recover=recover)

    def _locked_call(
        self, trigger: str, inputs: Inputs, paths: Sequence[str], *, recover: bool
    ) -> StepSummary:
        STEPS.labels(trigger).inc()
        with STEP_SECONDS.labels(trigger).time():
            try:
                return self._step(trigger, inputs, paths, recover)
            except (ServoError, OSError) as exc:
                # The state may hold events that were not published: drop it, so the
                # next call starts from the manifest (the ledger keeps what was
                # written; the caller's queue delivers this request again).
                self._reconciler = None
                STEP_ERRORS.labels(type(exc).__name__).inc()
                log.warning(
                    "reconciler.step_failed",
                    tenant_id=self.tenant_id,
                    workspace_id=self.workspace_id,
                    trigger=trigger,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
                raise

    def _step(
        self,
        trigger: str,
        inputs: Inputs,
        paths: Sequence[str],
        recover: bool,
    ) -> StepSummary:
        reconciler = self._fresh()
        now = self._clock()
        lag = self.settings.report_lag_us
        fresh_at = now - lag
        # The reported objects not folded yet, and every numbered batch appended since
        # (other writers' reports still in the queue, another instance's steps).
        paths = [p for p in paths if not reconciler.compactor.folded(p)]
        written, newer = self._read(paths), self._newer(reconciler.compactor, paths)
        written += [e for _, events in newer for e in events]
        paths = [*paths, *(path for path, _ in newer)]
        if recover:
            found, found_paths = recovery.unfolded(self._store, reconciler.compactor)
            written, paths = [*written, *found], [*paths, *found_paths]
        effects = reconciler.step(
            Inputs(
                written=written,
                paths=list(paths),
                reported=[*inputs.reported, *self._take_outcomes()],
                due=inputs.due,
                fresh_at=fresh_at,
                sweep=inputs.sweep,
                now=now,
                report_lag_us=lag,
            )
        )
        if trigger == "sweep":
            overdue = [timer_id for timer_id, due_at in effects.arm if due_at <= now]
            if overdue:  # deliver them here: a lost delivery would not come back
                effects.arm = [(t, d) for t, d in effects.arm if d > now]
                fired = reconciler.step(
                    Inputs(due=overdue, fresh_at=fresh_at, now=now, report_lag_us=lag)
                )
                _merge(effects, fired)
        self._outcomes = self._apply(effects)
        if trigger != "reconcile" or self._publish_due(reconciler, [*written, *inputs.reported]):
            reconciler.flush(self._take_outcomes(), publish=True, fresh_at=fresh_at)
            self._published(reconciler)
        else:  # the outcomes go with the next step's batch (or the deferred publish)
            self._dirty = True
            self._flush_later()
        return StepSummary(
            generation=self.state_generation(),
            enqueued=len(effects.enqueue),
            armed=len(effects.arm),
            stopped=len(effects.stop),
            swept=effects.swept,
        )

    def _take_outcomes(self) -> list[ev.Event]:
        """The `DispatchEnqueued` events of the last step's dispatches, to write with
        this step's batch. Lost with the instance, they only make the sweep hand the
        same tasks to the queue again (ALREADY_EXISTS)."""
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _read(self, paths: Sequence[str]) -> list[ev.Event]:
        """The events of `paths`, read concurrently (each is one object-store call)."""
        if len(paths) <= 1:
            return self._reader.read_many(list(paths))
        return [e for events in self._pool.map(self._reader.read, paths) for e in events]

    def _newer(
        self, compactor: Compactor, reported: Sequence[str]
    ) -> list[tuple[str, list[ev.Event]]]:
        """Numbered batches neither folded nor `reported`, up to the first absent
        number: writers' batches nobody notified (starts of long attempts,
        heartbeats), another instance's unpublished steps. Probed by reading them (a
        miss ends the probe): the next number alone, as most steps find none, then
        `PROBE_WINDOW` at a time."""
        through, acked = compactor.batches_folded()
        known = acked | {seq for p in reported if (seq := batch_seq(p)) is not None}
        top = max(known, default=through)
        gaps = [seq for seq in range(through + 1, top + 1) if seq not in known]
        found = [f for f in self._pool.map(self._batch, gaps) if f is not None]
        seq, width = top + 1, 1
        while True:
            window = list(self._pool.map(self._batch, range(seq, seq + width)))
            width = PROBE_WINDOW
            for item in window:
                if item is None:
                    self._ledger.skip_to(seq)  # this step's batch goes at `seq` or later
                    return found
                found.append(item)
                seq += 1

    def _batch(self, seq: int) -> tuple[str, list[ev.Event]] | None:
        path = batch_path(self._prefix, seq)
        try:
            return path, self._reader.read(path)
        except ObjectNotFoundError:
            return None

    def _apply(self, effects: Effects) -> list[ev.Event]:
        """Stop, enqueue and arm what the (durable) step asked for, the queue calls
        concurrently; the `DispatchEnqueued` events to publish."""
        now = self._clock()

        def one(part: Effects) -> list[ev.Event]:
            return apply_effects(part, self._dispatcher, self._timers, now=now, new_id=self._new_id)

        parts = [Effects(stop=[s]) for s in effects.stop]
        parts += [Effects(enqueue=[r]) for r in effects.enqueue]
        parts += [Effects(arm=[t]) for t in effects.arm]
        if len(parts) <= 1:
            return [e for part in parts for e in one(part)]
        return [e for found in self._pool.map(one, parts) for e in found]

    def _publish_due(self, reconciler: Reconciler, written: Sequence[ev.Event]) -> bool:
        """Publish now when a run the reports touched has ended (its follower waits
        for that), or the last publish is `publish_interval_s` old; otherwise later
        (`_flush_later`): the events are in the ledger, and the next instance folds
        what was not published from there."""
        if self._monotonic() - self._published_at >= self.settings.publish_interval_s:
            return True
        state = reconciler.state
        for run_id in {e.run_id for e in written if e.run_id}:
            run = state.run(run_id)
            if run is not None and run.status != s.RUN_RUNNING:
                return True
        return False

    def _flush_later(self) -> None:
        """Publish what is folded once `publish_interval_s` has passed, unless a step
        does it first."""
        if self._flusher is not None and self._flusher.is_alive():
            return
        delay = max(0.0, self._published_at + self.settings.publish_interval_s - self._monotonic())
        self._flusher = threading.Timer(delay, self._flush)
        self._flusher.daemon = True
        self._flusher.start()

    def _flush(self) -> None:
        with self._lock:
            reconciler = self._reconciler
            if reconciler is None or not self._dirty:
                return
            try:
                fresh_at = self._clock() - self.settings.report_lag_us
                reconciler.flush(self._take_outcomes(), publish=True, fresh_at=fresh_at)
            except (ServoError, OSError) as exc:  # the next step publishes, or reloads
                self._reconciler = None
                STEP_ERRORS.labels(type(exc).__name__).inc()
                log.warning(
                    "reconciler.publish_failed",
                    tenant_id=self.tenant_id,
                    workspace_id=self.workspace_id,
                    error_type=type(exc).__name__,
                )
                return
            self._published(reconciler)

    def _published(self, reconciler: Reconciler) -> None:
        self._published_at = self._monotonic()
        self._dirty = False
        self._publishing.published(reconciler.compactor.snapshot)

    def _fresh(self) -> Reconciler:
        """The reconciler over the newest published state (reloaded when another
        instance published since the last call)."""
        current = self._reconciler
        if current is not None:
            # Other writers' ledger batches are folded by every step (`_newer`); the
            # manifest is probed at most once per publish interval, for a run another
            # instance took (its request is not a numbered batch).
            if self._monotonic() - self._checked_at < self.settings.publish_interval_s:
                return current
            self._checked_at = self._monotonic()
            manifest = current.compactor.manifest
            known = 0 if manifest is None else manifest.generation
            if self._manifests.latest_generation() == known:
                return current
            RELOADS.inc()
        self._checked_at = self._monotonic()
        self._outcomes = []
        compactor = Compactor(
            self._store,
            self.tenant_id,
            self.workspace_id,
            clock=self._clock,
            max_l0_files=self.settings.max_l0_files,
            archive=True,
        )
        # Batches an instance wrote but did not publish (it died, or deferred the
        # publish) are found by probing past the manifest's numbered batches.
        found, found_paths = recovery.unfolded(self._store, compactor)
        if found or found_paths:
            compactor.fold(found, paths=found_paths)
        self._reconciler = Reconciler(
            compactor,
            self._ledger,
            request_builder(self._defs, self.tenant_id, self.workspace_id),
            clock=self._clock,
            new_id=self._new_id,
            timers=TimerSettings(self.settings.heartbeat_timeout_us),
            sweep_settings=self.settings.sweep,
        )
        return self._reconciler


def _merge(into: Effects, more: Effects) -> None:
    into.enqueue.extend(more.enqueue)
    into.stop.extend(more.stop)
    into.arm.extend(more.arm)
