"""Per-attempt output capture: size bound, thread attribution, chunks, loggers."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo.errors import TransientStorageError
from servo.observability import metrics
from servo.storage.memory import MemoryObjectStore
from servo.worker.attempt_logs import AttemptLogKey, read_log
from servo.worker.capture import AttemptLog, attempt_capture


def key(task: str = "a", attempt: int = 1) -> AttemptLogKey:
    return AttemptLogKey("t", "w", "run", task, attempt)


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_output_under_the_limit_is_kept_whole_in_order() -> None:
    store = MemoryObjectStore()
    log = AttemptLog(store, key(), limit_bytes=1000)
    for i in range(10):
        log.write(f"line {i}\n")
        log.sync()  # one chunk per line
    log.close()
    found = read_log(store, key())
    assert found.text == "".join(f"line {i}\n" for i in range(10))
    assert found.next_seq == 10 and log.cut_bytes == 0


def test_output_over_the_limit_keeps_head_and_tail_and_marks_the_cut() -> None:
    store = MemoryObjectStore()
    log = AttemptLog(store, key(), limit_bytes=200)
    text = "".join(f"{i:04d}\n" for i in range(1000))  # 5000 bytes
    for line in text.splitlines(keepends=True):
        log.write(line)
    log.close()
    stored = read_log(store, key()).text
    assert stored.startswith(text[:100])
    assert stored.endswith(text[-100:])
    assert f"[servo: {5000 - 200} bytes cut here]" in stored
    assert "[servo: output over 100 bytes: only its last 100 bytes are kept" in stored
    assert len(stored.encode()) < 200 + 300  # the kept bytes and two short marks
    assert log.cut_bytes == 4800


def test_a_follower_reads_new_chunks_from_where_it_stopped() -> None:
    store = MemoryObjectStore()
    log = AttemptLog(store, key())
    log.write("first\n")
    log.sync()
    first = read_log(store, key())
    log.write("second\n")
    log.close()
    rest = read_log(store, key(), first.next_seq)
    assert (first.text, rest.text) == ("first\n", "second\n")
    assert read_log(store, key(), rest.next_seq).text == ""


def test_a_second_execution_of_the_same_attempt_appends_after_the_first() -> None:
    store = MemoryObjectStore()
    for text in ("run one\n", "run two\n"):
        log = AttemptLog(store, key())
        log.write(text)
        log.close()
    assert read_log(store, key()).text == "run one\nrun two\n"


class FlakyStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def put_if_absent(self, path: str, data: bytes) -> int:
        if self.failures:
            self.failures -= 1
            raise TransientStorageError("store unavailable")
        return super().put_if_absent(path, data)


def test_a_chunk_the_store_refused_is_written_at_the_next_flush() -> None:
    store = FlakyStore()
    before = metrics.sample(
        "servo_attempt_log_flush_errors_total", {"error_type": "TransientStorageError"}
    )
    log = AttemptLog(store, key())
    log.write("kept\n")
    log.sync()
    assert read_log(store, key()).text == ""
    log.write("more\n")
    log.close()
    assert read_log(store, key()).text == "kept\nmore\n"
    after = metrics.sample(
        "servo_attempt_log_flush_errors_total", {"error_type": "TransientStorageError"}
    )
    assert after == before + 1


def test_attempts_in_threads_get_their_own_output_and_others_pass_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = MemoryObjectStore()
    barrier = threading.Barrier(2)

    def attempt(name: str) -> None:
        with attempt_capture(store, key(name)) as captured:
            for i in range(50):
                barrier.wait(5)  # both attempts write at the same time, line by line
                print(f"{name} {i}")
                sys.stderr.write(f"{name} err {i}\n")
                captured.log.info("step", asset=name, i=i)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("left", "right")]
    for thread in threads:
        thread.start()
    print("not an attempt")
    for thread in threads:
        thread.join(30)
    for name, other in (("left", "right"), ("right", "left")):
        text = read_log(store, key(name)).text
        assert f"{name} 49\n" in text and f"{name} err 49\n" in text
        assert f"asset={name} i=49" in text
        assert other not in text
        assert len(text.splitlines()) == 150
    out = capsys.readouterr().out
    assert out == "not an attempt\n"


def test_streams_and_handlers_are_restored_when_no_attempt_runs() -> None:
    stdout, stderr = sys.stdout, sys.stderr
    handlers = list(logging.getLogger().handlers)
    with attempt_capture(MemoryObjectStore(), key()):
        assert sys.stdout is not stdout and sys.stderr is not stderr
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    assert logging.getLogger().handlers == handlers


def test_context_log_and_standard_logging_are_captured() -> None:
    store = MemoryObjectStore()
    with attempt_capture(store, key()) as captured:
        captured.log.debug("debug is kept", rows=3, api_token="hunter2")
        logging.getLogger("user.module").warning("stdlib says %s", "hi")
    text = read_log(store, key()).text
    assert "[debug" in text and "debug is kept" in text and "rows=3" in text
    assert "hunter2" not in text
    assert "WARNING user.module: stdlib says hi" in text


def test_output_reaches_the_store_while_the_attempt_runs() -> None:
    store = MemoryObjectStore()
    with attempt_capture(store, key()):
        print("early")
        wait_for(lambda: read_log(store, key()).text == "early\n")


_MARK = re.compile(r"\n\[servo: [^\]]*\]\n")


@given(
    writes=st.lists(st.tuples(st.text("ab\n", max_size=40), st.booleans()), max_size=30),
    limit=st.integers(2, 120),
)
def test_the_stored_log_is_the_head_and_tail_of_the_output_whatever_the_flushes(
    writes: list[tuple[str, bool]], limit: int
) -> None:
    store = MemoryObjectStore()
    log = AttemptLog(store, key(), limit_bytes=limit)
    for text, sync in writes:
        log.write(text)
        if sync:
            log.sync()
    log.close()
    full = "".join(text for text, _ in writes)
    kept = _MARK.sub("", read_log(store, key()).text)
    if len(full) <= limit:
        assert kept == full
    else:
        assert kept == full[: limit // 2] + full[-(limit - limit // 2) :]
        assert log.cut_bytes == len(full) - limit
