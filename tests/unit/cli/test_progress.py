"""The progress line of a run on the terminal."""

from __future__ import annotations

from collections import Counter

from servo.cli.render_runs import Progress
from servo.engine import schema as s


def detail(statuses: list[str]) -> str:
    run = s.RunRow("r", "default", "default", "e", 0)
    with Progress(enabled=True, resumed=False) as progress:
        progress.update(run, Counter(statuses))
        assert progress._bar is not None
        found = progress._bar.tasks[0].fields["detail"]
    assert isinstance(found, str)
    return found


def test_the_progress_line_shows_retries_only_when_there_are_some() -> None:
    waiting = detail([s.RETRY_WAIT, s.RETRY_WAIT, s.RUNNING, s.SUCCEEDED])
    assert waiting == "running 1  retrying 2  failed 0  skipped 0"
    assert "retrying" not in detail([s.RUNNING, s.FAILED])


def test_the_bar_counts_every_task_and_the_terminal_ones_as_done() -> None:
    run = s.RunRow("r", "default", "default", "e", 0)
    with Progress(enabled=True, resumed=False) as progress:
        progress.update(run, {s.SUCCEEDED: 3, s.FAILED: 1, s.RUNNING: 2, s.PENDING: 4})
        assert progress._bar is not None
        bar = progress._bar.tasks[0]
    assert (bar.completed, bar.total) == (4, 10)
