"""The home lock: one holder at a time, a clear message naming it, released on close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from servo.engine.home_lock import HomeLock, home_lock_path
from servo.errors import HomeBusyError


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_purpose(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with HomeLock(home, "servo materialize") as held:
        assert held.held and home_lock_path(home).is_file()
        other = HomeLock(home, "servo gc")
        with pytest.raises(HomeBusyError) as refused:
            other.acquire()
        assert not other.held
        message = str(refused.value)
        assert message.startswith(
            f"another servo process (pid {os.getpid()}: servo materialize) is running on {home}"
        )
        assert "servo runs cancel RUN_ID" in message and "\n" not in message
        assert refused.value.exit_code == 75
    with HomeLock(home, "servo gc") as after:  # released when the first one closed
        assert after.holder() == (os.getpid(), "servo gc")


def test_an_unreadable_lock_file_still_gives_a_message(tmp_path: Path) -> None:
    with HomeLock(tmp_path, "servo materialize"):
        home_lock_path(tmp_path).write_bytes(b"\xff\xfe")
        with pytest.raises(HomeBusyError, match=r"^another servo process is running on "):
            HomeLock(tmp_path, "servo gc").acquire()


def test_the_lock_goes_with_its_process_even_on_kill_9(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; from servo.engine.home_lock import HomeLock; "
         f"HomeLock({str(tmp_path)!r}, 'holder').acquire(); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(HomeBusyError, match=f"pid {holder.pid}: holder"):
            HomeLock(tmp_path, "servo materialize").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()  # reaps it and closes the pipes
    with HomeLock(tmp_path, "servo materialize") as lock:  # no stale lock to clean
        assert lock.held
