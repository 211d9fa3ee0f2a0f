"""Engine settings reach the runner that a session builds."""

from __future__ import annotations

from pathlib import Path

from servo import Definitions, asset
from servo.config.settings import EngineSettings, Settings
from servo.embedded.session import RunRequest, runner_options
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.storage.memory import MemoryObjectStore


@asset
def one() -> int:
    return 1


@asset
def two(one: int) -> int:
    return one + 1


def test_max_l0_files_reaches_the_runners_compactor(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, engine=EngineSettings(max_l0_files=1))
    options = runner_options(Definitions(assets=[one, two]), RunRequest(), settings)
    assert options.max_l0_files == 1
    store = MemoryObjectStore()
    with EmbeddedRunner(store, Definitions(assets=[one, two]), options) as runner:
        assert runner.compactor.max_l0_files == 1
        for _ in range(3):
            runner.wait(runner.start_run().run_id)
        manifest = runner.compactor.manifest
    assert manifest is not None
    assert all(len(files.deltas) <= 1 for files in manifest.tables.values())
    assert RunnerOptions().max_l0_files == EngineSettings().max_l0_files
