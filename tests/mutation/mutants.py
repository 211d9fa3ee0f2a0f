"""The targeted mutants: small, exact textual patches the named tests must notice.

Each mutant replaces one snippet of one module under ``src/`` with a wrong variant
that a plausible edit could introduce. `old` must occur exactly once in the module,
so a mutant whose code moved is reported as "patch does not apply" instead of being
counted as killed. `tests` are the test files (or node ids) that must kill it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mutant:
    """One wrong variant of the code.

    Attributes:
        name: short id, used on the command line.
        why: the bug it stands for.
        path: the module, relative to ``src/``.
        old: the exact snippet replaced (occurs exactly once).
        new: its replacement.
        tests: pytest targets (files or node ids, relative to the repository root).
    """

    name: str
    why: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


FOLD = "servo/engine/fold.py"
DERIVE = "servo/engine/derive.py"
IDS = "servo/engine/ids.py"
TIMERS = "servo/engine/controllers/timers.py"
RECONCILE = "servo/engine/reconcile.py"
EFFECTS = "servo/engine/effects.py"
POOL = "servo/dispatch/local.py"

FOLD_TESTS = ("tests/unit/engine/test_fold.py", "tests/unit/engine/test_fold_findings.py")
ID_TESTS = ("tests/unit/engine/test_dispatch.py", "tests/unit/engine/test_ids.py")
TIMER_TESTS = ("tests/unit/engine/test_timers.py",)
POOL_TESTS = ("tests/unit/engine/test_dispatch.py", "tests/unit/dispatch")
RUNNER_TESTS = ("tests/unit/runner/test_freshness.py", "tests/unit/runner/test_outbox_dispatch.py")

_CANCEL_IF = "if run.cancel_requested_at is None or event.emitted_at < run.cancel_requested_at:"

MUTANTS: tuple[Mutant, ...] = (
    # 1. Duplicates re-touching rows: spurious deltas although nothing changed.
    Mutant(
        "dup-cancel-retouches",
        "a duplicate RunCancelRequested marks the run (and its tasks) changed again",
        FOLD,
        _CANCEL_IF,
        _CANCEL_IF.replace("emitted_at < run", "emitted_at <= run"),
        FOLD_TESTS,
    ),
    Mutant(
        "dup-timer-fired-retouches",
        "a duplicate TimerFired marks the timer row changed again",
        FOLD,
        "elif timer.fired_at is None or event.emitted_at < timer.fired_at:",
        "elif timer.fired_at is None or event.emitted_at <= timer.fired_at:",
        FOLD_TESTS + TIMER_TESTS,
    ),
    Mutant(
        "timer-status-always-touched",
        "every timer event marks its row changed, even when its status did not change",
        FOLD,
        "        if timer.status != status:\n            timer.status = status\n",
        "        if True:\n            timer.status = status\n",
        FOLD_TESTS + TIMER_TESTS,
    ),
    Mutant(
        "task-change-always-reported",
        "every recomputed task is reported as changed on the change feed",
        FOLD,
        "            if apply_task_state(task, state):\n"
        '                self._touch("tasks", tid)\n',
        "            apply_task_state(task, state)\n"
        "            if True:\n"
        '                self._touch("tasks", tid)\n',
        FOLD_TESTS,
    ),
    # 2. The first cancel request wins; a later one changes nothing.
    Mutant(
        "latest-cancel-wins",
        "the latest cancel request wins (max instead of min: still order-insensitive)",
        FOLD,
        _CANCEL_IF,
        _CANCEL_IF.replace("emitted_at < run", "emitted_at > run"),
        FOLD_TESTS,
    ),
    Mutant(
        "last-folded-cancel-wins",
        "the cancel request folded last wins",
        FOLD,
        _CANCEL_IF,
        "if True:",
        FOLD_TESTS,
    ),
    # 3. The pool remembers every dispatch id it was handed.
    Mutant(
        "pool-forgets-seen-ids",
        "the local pool never records a cloud_task_id, so a duplicate enqueue runs twice",
        POOL,
        "                self._seen.add(request.cloud_task_id)\n",
        "",
        POOL_TESTS,
    ),
    Mutant(
        "pool-ignores-seen-ids",
        "the local pool records ids but never checks them",
        POOL,
        "if request.cloud_task_id in self._seen:",
        "if False:",
        POOL_TESTS,
    ),
    # 4. The runner enqueues only PENDING outbox rows that are not in flight.
    Mutant(
        "runner-enqueues-non-pending",
        "the reconcile step enqueues outbox rows already ENQUEUED or COMPLETED",
        RECONCILE,
        "if row is not None and row.status == s.OUTBOX_PENDING:",
        "if row is not None:",
        RUNNER_TESTS,
    ),
    Mutant(
        "runner-reenqueues-inflight",
        "the runner enqueues again an attempt its pool is still running",
        EFFECTS,
        "        if request.dispatch_id in skip:\n",
        "        if False:\n",
        RUNNER_TESTS,
    ),
    # 5. Ids are the same in every process.
    Mutant(
        "salted-hash-in-ids",
        "queue ids hash with Python's per-process salted hash() instead of sha256",
        IDS,
        '    return hashlib.sha256(text.encode("utf-8")).hexdigest()\n',
        '    return f"{hash(text) % 16**64:064x}"\n',
        ID_TESTS,
    ),
    # 6. Timer ids are a function of their cause, never of the clock.
    Mutant(
        "wall-clock-in-timer-id",
        "timer ids carry the wall-clock time they were made at",
        IDS,
        '    return f"timer:{tenant_id}:{workspace_id}:{run_id}:{task_key}:{attempt}:{kind}"\n',
        '    return f"timer:{tenant_id}:{workspace_id}:{run_id}:{task_key}:{attempt}:{kind}"'
        ' + f":{time.time_ns()}"\n',
        ID_TESTS + TIMER_TESTS,
    ),
    Mutant(
        "now-in-retry-timer-id",
        "the retry timer's id carries the controller's 'now'",
        TIMERS,
        "tid = timer_id(*ids, TimerKind.RETRY)",
        'tid = timer_id(*ids, f"{TimerKind.RETRY}.{now}")',
        TIMER_TESTS,
    ),
    # 7. Only SUCCESS edges count as satisfied.
    Mutant(
        "failed-edges-counted",
        "FAILED edges are counted in deps_satisfied_count",
        DERIVE,
        "satisfied = sum(1 for d in deps if d.resolution == s.RESOLUTION_SUCCESS)",
        "satisfied = sum(1 for d in deps if d.resolution in "
        "(s.RESOLUTION_SUCCESS, s.RESOLUTION_FAILED))",
        FOLD_TESTS,
    ),
    Mutant(
        "skipped-edges-counted",
        "SKIPPED edges are counted in deps_satisfied_count",
        DERIVE,
        "satisfied = sum(1 for d in deps if d.resolution == s.RESOLUTION_SUCCESS)",
        "satisfied = sum(1 for d in deps if d.resolution in "
        "(s.RESOLUTION_SUCCESS, s.RESOLUTION_SKIPPED))",
        FOLD_TESTS,
    ),
    # 8. Freshness is the time up to which every report is folded.
    Mutant(
        "runner-now-as-watermark",
        "the reconcile step passes the clock ('now') as the timers' freshness watermark",
        RECONCILE,
        "            watermark=inputs.fresh_at,\n",
        "            watermark=now,\n",
        RUNNER_TESTS,
    ),
    # Beyond the list: the same spirit, on neighbouring rules.
    Mutant(
        "stale-attempt-accepted",
        "the fold judges an event of a non-current attempt as current",
        FOLD,
        "        if event.attempt != task.attempt or event.attempt_id != task.attempt_id:\n"
        "            return True\n",
        "        if event.attempt != task.attempt or event.attempt_id != task.attempt_id:\n"
        "            return False\n",
        FOLD_TESTS,
    ),
    Mutant(
        "latest-dispatch-wins",
        "of two dispatches claiming one attempt number, the later one becomes current",
        DERIVE,
        "if best is None or (row.dispatch_at, row.dispatch_event_id) < (",
        "if best is None or (row.dispatch_at, row.dispatch_event_id) > (",
        (*FOLD_TESTS, "tests/unit/engine/test_dispatch.py"),
    ),
    Mutant(
        "dispatch-after-success-sent",
        "a dispatch of a task that already succeeded stays PENDING in the outbox",
        FOLD,
        "if attempt.end_event_id is not None or (done_at is not None and number > done_at):",
        "if attempt.end_event_id is not None:",
        FOLD_TESTS,
    ),
    Mutant(
        "dup-heartbeat-retouches",
        "a duplicate TaskHeartbeat marks the attempt row changed again",
        FOLD,
        "elif isinstance(payload, ev.TaskHeartbeat):\n"
        "            if row.heartbeat_at is None or at > row.heartbeat_at:",
        "elif isinstance(payload, ev.TaskHeartbeat):\n"
        "            if row.heartbeat_at is None or at >= row.heartbeat_at:",
        FOLD_TESTS,
    ),
    Mutant(
        "timer-fires-one-tick-stale",
        "a timer fires when the watermark is one microsecond short of its due time",
        TIMERS,
        "if watermark < timer.due_at:",
        "if watermark + 1 < timer.due_at:",
        TIMER_TESTS,
    ),
    Mutant(
        "any-earlier-result-reused",
        "a new attempt may report the recorded result of any earlier attempt "
        "(a timed-out or cancelled one included), not only of one whose worker was lost",
        DERIVE,
        "if n < before and _abandoned(winners[n], _UNSEEN_REASONS)",
        "if n < before",
        (
            "tests/unit/engine/test_reusable_results.py",
            "tests/unit/worker/test_result_reuse_properties.py",
            "tests/unit/worker/test_runtime_stop.py",
            "tests/unit/runner/test_timeout_results.py",
        ),
    ),
    Mutant(
        "last-folded-run-request-wins",
        "of two RunRequested for one run, the one folded last wins (order-dependent)",
        FOLD,
        "                if earlier(event.order_key, (run.requested_at, run.request_event_id)):",
        "                if True:",
        FOLD_TESTS,
    ),
    Mutant(
        "recorded-result-of-lost-worker-ignored",
        "a redelivered attempt ignores the result its lost predecessor recorded and "
        "runs the asset again (effects twice)",
        "servo/worker/runtime.py",
        "for attempt_id in (request.attempt_id, *request.reusable_attempt_ids):",
        "for attempt_id in (request.attempt_id,):",
        (
            "tests/unit/engine/test_reusable_results.py",
            "tests/unit/worker/test_result_reuse_properties.py",
            "tests/unit/worker/test_runtime_stop.py",
            "tests/unit/runner/test_timeout_results.py",
        ),
    ),
)
