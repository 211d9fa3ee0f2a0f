"""Hypothesis strategies and builders for engine event streams."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from servo.engine import events as ev
from servo.engine.fold import EngineState
from servo.engine.ids import timer_id
from servo.engine.schema import TABLES
from servo.engine.vocabulary import TimerKind

TENANT = "t1"
WORKSPACE = "w1"


@dataclass
class History:
    """Builds events for one run with increasing timestamps."""

    run_id: str = "run1"
    clock: int = 1_000_000
    seq: int = 0
    events: list[ev.Event] = field(default_factory=list)

    def _id(self) -> str:
        self.seq += 1
        return f"01EVENT{self.seq:019d}"

    def emit(self, payload: ev.Payload, task: str | None = None, attempt: int | None = None,
             attempt_id: str | None = None, at: int | None = None) -> ev.Event:  # fmt: skip
        self.clock += 1000
        event = ev.Event(
            event_id=self._id(),
            tenant_id=TENANT,
            workspace_id=WORKSPACE,
            run_id=self.run_id,
            payload=payload,
            task_key=task,
            attempt=attempt,
            attempt_id=attempt_id,
            emitted_at=self.clock if at is None else at,
        )
        self.events.append(event)
        return event

    def request(self, deps: dict[str, Sequence[str]], max_attempts: int = 1) -> ev.Event:
        tasks = tuple(
            ev.PlannedTask(
                name, name, deps=tuple((d, "data") for d in ups), max_attempts=max_attempts
            )
            for name, ups in deps.items()
        )
        return self.emit(ev.RunRequested(tasks=tasks, idempotency_key=f"key-{self.run_id}"))

    def dispatch(self, task: str, attempt: int = 1) -> str:
        attempt_id = f"A{task}{attempt}{self.seq}"
        self.emit(ev.DispatchRequested(), task, attempt, attempt_id)
        return attempt_id

    def run_attempt(self, task: str, attempt: int, outcome: str = "succeeded",
                    retryable: bool = False, heartbeats: int = 1) -> str:  # fmt: skip
        aid = self.dispatch(task, attempt)
        self.emit(ev.DispatchEnqueued(cloud_task_id="d_x"), task, attempt, aid)
        self.emit(ev.TaskStarted(worker_id="w"), task, attempt, aid)
        for _ in range(heartbeats):
            self.emit(ev.TaskHeartbeat(), task, attempt, aid)
        output = (
            ev.OutputRef(f"outputs/{task}/{attempt}.json", "json", 10)
            if outcome == "succeeded"
            else None
        )
        self.emit(
            ev.TaskFinished(
                outcome=outcome,  # type: ignore[arg-type]
                error_type=None if outcome == "succeeded" else "ValueError",
                error_message=None if outcome == "succeeded" else "boom",
                retryable=retryable,
                output=output,
            ),
            task, attempt, aid,
        )  # fmt: skip
        return aid

    def retry_timer(self, task: str, attempt: int, fire: bool = True) -> None:
        tid = timer_id(TENANT, WORKSPACE, self.run_id, task, attempt, TimerKind.RETRY)
        self.emit(
            ev.TimerRequested(timer_id=tid, kind=TimerKind.RETRY, due_at=self.clock + 5),
            task,
            attempt,
            "x",
        )
        if fire:
            self.emit(ev.TimerFired(timer_id=tid), task, attempt, "x")


def fold(events: Sequence[ev.Event], batches: Sequence[int] = ()) -> EngineState:
    """Fold `events` in one batch, or split at the given cut points."""
    state = EngineState(TENANT, WORKSPACE)
    cuts = sorted({c for c in batches if 0 < c < len(events)})
    start = 0
    for cut in [*cuts, len(events)]:
        state.apply(events[start:cut])
        start = cut
    return state


def tables_of(state: EngineState) -> dict[str, list[object]]:
    """Each table's rows in key order: the logical content to compare."""
    return {t.name: sorted(state.rows(t.name), key=t.key_of) for t in TABLES}


def arrow_tables_of(state: EngineState) -> dict[str, bytes]:
    """Each table's canonical Arrow IPC bytes."""
    import pyarrow as pa

    out = {}
    for spec in TABLES:
        table = spec.to_arrow(state.rows(spec.name))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        out[spec.name] = sink.getvalue().to_pybytes()
    return out


def _dags(draw: st.DrawFn, size: int) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    names = [f"a{i}" for i in range(size)]
    for i, name in enumerate(names):
        ups = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True)) if i else []
        deps[name] = ups
    return deps


@st.composite
def histories(draw: st.DrawFn) -> list[ev.Event]:
    """A run's causally plausible history, with failures, retries, stale events, cancels."""
    size = draw(st.integers(1, 7))
    deps = _dags(draw, size)
    h = History(run_id=draw(st.sampled_from(["run1", "run2"])))
    h.request(deps, max_attempts=3)
    status: dict[str, str] = {}
    for name, ups in deps.items():
        if any(status.get(u) != "ok" for u in ups):
            status[name] = "blocked"
            continue
        attempt = 1
        while True:
            kind = draw(st.sampled_from(["ok", "ok", "fail", "retry", "hang", "stale"]))
            if kind == "stale":
                h.emit(ev.TaskFinished(outcome="succeeded"), name, attempt, "STALE-ID")
                kind = "ok"
            if kind == "hang":
                aid = h.dispatch(name, attempt)
                for _ in range(draw(st.integers(0, 3))):
                    h.emit(ev.TaskHeartbeat(), name, attempt, aid)
                status[name] = "hang"
                break
            retryable = kind == "retry"
            outcome = "succeeded" if kind == "ok" else "failed"
            h.run_attempt(name, attempt, outcome, retryable, draw(st.integers(0, 3)))
            if kind == "retry" and attempt < 3:
                fire = draw(st.booleans())
                h.retry_timer(name, attempt, fire)
                if not fire:
                    status[name] = "waiting"
                    break
                attempt += 1
                continue
            status[name] = "ok" if kind == "ok" else "failed"
            break
    if draw(st.booleans()):
        h.emit(ev.RunCancelRequested(reason="test"))
    return h.events


@st.composite
def shuffled_with_duplicates(draw: st.DrawFn) -> tuple[list[ev.Event], list[ev.Event], list[int]]:
    """(history, a permutation of it with duplicates, batch cut points)."""
    events = draw(histories())
    extra = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    permuted = draw(st.permutations(events + extra))
    cuts = draw(st.lists(st.integers(0, len(permuted)), max_size=6))
    return events, permuted, cuts


def chunks(seq: Sequence[ev.Event], size: int) -> Iterator[Sequence[ev.Event]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
