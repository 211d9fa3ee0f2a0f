"""The progress line of a run on the terminal."""

from __future__ import annotations

from servo.cli.render_runs import Progress
from servo.engine import schema as s


def task(key: str, status: str) -> s.TaskRow:
    return s.TaskRow(run_id="r", task_key=key, asset_key=key, status=status)


def detail(statuses: list[str]) -> str:
    run = s.RunRow("r", "default", "default", "e", 0)
    with Progress(enabled=True, resumed=False) as progress:
        progress.update(run, [task(f"t{i}", st) for i, st in enumerate(statuses)])
        assert progress._bar is not None
        found = progress._bar.tasks[0].fields["detail"]
    assert isinstance(found, str)
    return found


def test_the_progress_line_shows_retries_only_when_there_are_some() -> None:
    waiting = detail([s.RETRY_WAIT, s.RETRY_WAIT, s.RUNNING, s.SUCCEEDED])
    assert waiting == "running 1  retrying 2  failed 0  skipped 0"
    assert "retrying" not in detail([s.RUNNING, s.FAILED])
