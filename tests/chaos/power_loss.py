"""Power-loss simulation: cut the power at a random write, then restart on what survived.

`PowerLossStore` wraps an in-memory store and logs every write in the order the store
applied it. With ``fsync=True`` a write is durable when it returns (as
`LocalObjectStore` with fsync does); with ``fsync=False`` writes sit in a simulated
page cache that the kernel flushes at random moments (each write is followed by a
flush of everything before it with probability `FLUSH_PROBABILITY`).

`PowerLossStore.image(cut, rng)` is the store as a power loss after the first `cut`
writes leaves it: writes up to the last flush are there; each later one is dropped
or torn (cut short at a random length), independently, so a later write may survive
an earlier one's loss.

A trial (`run_trial`, one seed decides everything) runs a diamond of assets twice
(two idempotency keys), cuts the power at a random write, and restarts on the image:

- **fsync on**: nothing acknowledged is lost. The image holds every write before the
  cut, whole; the startup salvage finds nothing to set aside; the keyed runs resume
  to success; every ledger object written before the cut is still there; the
  projections equal a replay of the ledger.
- **fsync off**: the loss is detected and repaired, and the home keeps working.
  ``servo doctor``'s checks (`servo.maintenance.doctor.check_scope`) name every torn
  ledger object and manifest; the runner starts anyway (salvage); after ``servo
  doctor --repair``'s repair the home is healthy, the projections equal a replay of
  the ledger (`servo.engine.replay`), and a new run succeeds.

Campaign, from the repository root (trial ``i`` uses seed ``base + i``)::

    python -m tests.chaos.power_loss --trials 500 --seed 1234
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from servo.config.settings import Settings
from servo.engine.ledger import ledger_prefix
from servo.engine.projections import clear_cache
from servo.engine.replay import replay_and_compare
from servo.maintenance.doctor import diagnose_home
from servo.maintenance.repair import repair_home
from servo.maintenance.salvage import salvage_scope
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk import Definitions, asset
from servo.storage.base import StoredObject
from servo.storage.memory import MemoryObjectStore

TENANT = WORKSPACE = "default"
#: The runs of a trial, one after the other (the cut may land in either).
KEYS = ("power-loss-1", "power-loss-2")
#: Chance that the kernel flushes every earlier write after a write (fsync off).
FLUSH_PROBABILITY = 0.15
#: Base seed in CI; trials per CI run of the suite (a bounded sample).
CI_SEED = 20261203
CI_TRIALS = 12


@asset
def source() -> int:
    return 1


@asset
def left(source: int) -> int:
    return source + 1


@asset
def right(source: int) -> int:
    return source + 2


@asset
def joined(left: int, right: int) -> int:
    return left * right


DIAMOND = Definitions(assets=[source, left, right, joined])


@dataclass(frozen=True, slots=True)
class Write:
    """One write the store applied: `data` None for a delete."""

    path: str
    data: bytes | None


class PowerLossStore:
    """An object store that logs writes and can show what a power cut leaves.

    Args:
        fsync: every write is durable when it returns; else the page cache model.
        rng: decides the kernel's flushes.
    """

    def __init__(self, *, fsync: bool, rng: random.Random) -> None:
        self.inner = MemoryObjectStore()
        self.fsync = fsync
        self.writes: list[Write] = []
        #: `flushed[i]`: every write up to index i was durable after write i.
        self.flushed: list[bool] = []
        self._rng = rng
        self._lock = threading.Lock()

    def _logged(self, path: str, data: bytes | None, write: Callable[[], int]) -> int:
        with self._lock:
            generation = write()
            self.writes.append(Write(path, data))
            self.flushed.append(self.fsync or self._rng.random() < FLUSH_PROBABILITY)
            return generation

    def put_if_absent(self, path: str, data: bytes) -> int:
        return self._logged(path, bytes(data), lambda: self.inner.put_if_absent(path, data))

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        return self._logged(
            path, bytes(data), lambda: self.inner.put_if_generation(path, data, generation)
        )

    def delete(self, path: str) -> None:
        if self.inner.head(path) is not None:
            self._logged(path, None, lambda: (self.inner.delete(path), 0)[1])

    def get(self, path: str) -> StoredObject:
        return self.inner.get(path)

    def head(self, path: str) -> int | None:
        return self.inner.head(path)

    def list_prefix(self, prefix: str) -> Iterator[str]:
        return self.inner.list_prefix(prefix)

    def image(self, cut: int, rng: random.Random) -> tuple[MemoryObjectStore, Loss]:
        """The store after a power cut following the first `cut` writes."""
        durable = max((i + 1 for i in range(cut) if self.flushed[i]), default=0)
        image = MemoryObjectStore()
        loss = Loss()
        for index, write in enumerate(self.writes[:cut]):
            if index >= durable and rng.random() < 0.5:
                loss.dropped.append(write.path)
                continue
            data = write.data
            if index >= durable and data is not None:
                data = data[: rng.randrange(len(data))] if data else data
                loss.torn.append(write.path)
            _apply(image, write.path, data)
        return image, loss


@dataclass(slots=True)
class Loss:
    """What a power cut did to the writes after the last flush."""

    dropped: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)


def _apply(store: MemoryObjectStore, path: str, data: bytes | None) -> None:
    current = store.head(path)
    if data is None:
        store.delete(path)
    elif current is None:
        store.put_if_absent(path, data)
    else:
        store.put_if_generation(path, data, current)


@dataclass(slots=True)
class TrialResult:
    """One trial: its seed, what it did, and the first failure (None: passed)."""

    seed: int
    fsync: bool
    cut: int = 0
    writes: int = 0
    dropped: int = 0
    torn: int = 0
    repaired: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.error}"
        return (
            f"power-loss seed={self.seed} fsync={'on' if self.fsync else 'off'} "
            f"cut={self.cut}/{self.writes} dropped={self.dropped} torn={self.torn} "
            f"repaired={self.repaired} {verdict}"
        )


def _run(store: object, key: str | None, *, salvage: bool = True) -> str:
    """Run the diamond (resume the run of `key`) as `servo materialize` does."""
    if salvage:
        salvage_scope(store, TENANT, WORKSPACE)  # type: ignore[arg-type]
    with EmbeddedRunner(store, DIAMOND, RunnerOptions(concurrency=2)) as runner:  # type: ignore[arg-type]
        start = runner.start_run(idempotency_key=key)
        return str(runner.wait(start.run_id).status)


def _ledger(store: MemoryObjectStore) -> set[str]:
    return set(store.list_prefix(ledger_prefix(TENANT, WORKSPACE)))


def run_trial(seed: int, home: Path) -> TrialResult:
    """One trial (see the module docstring); never raises."""
    rng = random.Random(seed)
    result = TrialResult(seed, fsync=rng.random() < 0.5)
    try:
        _trial(rng, result, home)
    except Exception as exc:  # a failed check or a crash: the seed replays it
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    return result


def _trial(rng: random.Random, result: TrialResult, home: Path) -> None:
    store = PowerLossStore(fsync=result.fsync, rng=rng)
    for key in KEYS:
        assert _run(store, key, salvage=False) == "SUCCEEDED"
    result.writes = len(store.writes)
    result.cut = rng.randrange(result.writes + 1)
    image, loss = store.image(result.cut, rng)
    result.dropped, result.torn = len(loss.dropped), len(loss.torn)
    before = _ledger(image)
    clear_cache()  # a new process: nothing decoded before the cut is remembered
    settings = Settings(home=home, storage={"backend": "memory"})  # type: ignore[arg-type]

    if result.fsync:
        assert not loss.dropped and not loss.torn, "fsync on: an acknowledged write was lost"
        report = salvage_scope(image, TENANT, WORKSPACE)
        assert report.quarantined == [], f"fsync on, yet set aside: {report.quarantined}"
        for key in KEYS:
            assert _run(image, key, salvage=False) == "SUCCEEDED"
        assert before <= _ledger(image), "fsync on: a ledger object written before the cut is gone"
        assert diagnose_home(settings, image).healthy
        assert replay_and_compare(image, TENANT, WORKSPACE).equal
        return

    # fsync off: the doctor's checks name every torn ledger object and manifest.
    found = {f.path for f in diagnose_home(settings, image).findings}
    for path in loss.torn:
        recorded = path.startswith("ledger/") or "/manifest/0" in path
        if recorded and image.head(path) is not None and path not in found:
            raise AssertionError(f"torn {path} was not detected")
    for key in KEYS:
        _run(image, key)  # starts despite the damage; a torn value may fail an asset
    report = diagnose_home(settings, image)
    if not report.healthy:
        repaired = repair_home(settings, image, report)
        result.repaired = len(repaired.quarantined)
        remaining = diagnose_home(settings, image).findings
        assert not remaining, f"after the repair: {[f.message for f in remaining]}"
    assert replay_and_compare(image, TENANT, WORKSPACE).equal
    assert _run(image, None) == "SUCCEEDED", "the home does not work after the power loss"
    after = diagnose_home(settings, image).findings
    assert not after, f"after a new run: {[f.message for f in after]}"


def run_campaign(
    base_seed: int, trials: int, home: Path, report: Callable[[str], None] = print
) -> list[TrialResult]:
    """Trials ``base_seed .. base_seed + trials - 1``; each one's line is reported."""
    results = []
    for i in range(trials):
        result = run_trial(base_seed + i, home / f"trial-{i}")
        report(result.describe().splitlines()[0])
        results.append(result)
    return results


def failure_message(results: list[TrialResult]) -> str:
    failed = [r for r in results if not r.ok]
    replay = " ".join(f"--seed {r.seed}" for r in failed[:3])
    details = "\n\n".join(r.describe() for r in failed[:3])
    return f"{len(failed)} trial(s) failed; replay one with --trials 1 {replay}\n{details}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = run_campaign(args.seed, args.trials, Path(tmp))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(failure_message(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
