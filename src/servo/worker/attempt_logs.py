"""Where an attempt's captured output is stored, and how it is read back.

Layout (every object create-only, never changed)::

    logs/{tenant}/{workspace}/{run_id}/{task_key}/{attempt}/{seq:06d}.log

An attempt's log is the concatenation of its chunks in ``seq`` order. Writers
number chunks from 0 without gaps (`servo.worker.capture`), so a reader finds them
by reading ``seq`` 0, 1, 2, ... until one is missing: no listing, which works on any
store and lets a follower resume from the next ``seq`` it has not read yet.
Chunks are UTF-8 text; a chunk cut inside a character is decoded with replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

from servo.errors import ObjectNotFoundError
from servo.storage.base import ObjectStore

#: Upper bound on chunks read in one call (a log holds far fewer: see capture).
MAX_CHUNKS_PER_READ = 100_000


@dataclass(frozen=True, slots=True)
class AttemptLogKey:
    """One attempt of one task, as its log is stored.

    Attributes:
        tenant_id: tenant of the run.
        workspace_id: workspace of the run.
        run_id: the run.
        task_key: the task within the run.
        attempt: attempt number (1-based).
    """

    tenant_id: str
    workspace_id: str
    run_id: str
    task_key: str
    attempt: int

    @property
    def prefix(self) -> str:
        """The folder of this attempt's chunks (ends with ``/``)."""
        return (
            f"logs/{self.tenant_id}/{self.workspace_id}/{self.run_id}/"
            f"{self.task_key}/{self.attempt}/"
        )

    def chunk_path(self, seq: int) -> str:
        """The path of chunk `seq`."""
        return f"{self.prefix}{seq:06d}.log"


@dataclass(frozen=True, slots=True)
class LogRead:
    """Text read from an attempt's log.

    Attributes:
        text: the chunks read, decoded and concatenated.
        next_seq: the first chunk not read yet (pass it back to read what follows).
    """

    text: str
    next_seq: int


def read_log(store: ObjectStore, key: AttemptLogKey, start_seq: int = 0) -> LogRead:
    """Read the chunks of `key` from `start_seq` up to the first missing one."""
    parts: list[bytes] = []
    seq = start_seq
    while seq - start_seq < MAX_CHUNKS_PER_READ:
        try:
            parts.append(store.get(key.chunk_path(seq)).data)
        except ObjectNotFoundError:
            break
        seq += 1
    return LogRead(b"".join(parts).decode("utf-8", errors="replace"), seq)
