"""Local-disk object store: the embedded default (`.servo/` by default).

Each object is a plain file ``root/<path>``, holding exactly the object's bytes, so
that projections and asset values can be opened with any tool.

Design:

- **Atomic, create-only writes.** Content is first written to a temporary file in
  the target directory (``.tmp-{pid}-{random}-{n}``, created with ``O_EXCL``; listing
  skips these names and object paths may not use them). ``put_if_absent`` then
  ``os.link``\\ s it to the final name, which fails with ``EEXIST`` when the name is
  taken, and unlinks the temporary name; ``put_if_generation`` ``os.replace``\\ s it.
  Readers therefore see either no file or a complete one, never partial content.
- **Generation = the file's ``st_mtime_ns``, set explicitly.** Before publishing, the
  writer stamps the temporary file with ``os.utime`` to a nanosecond timestamp of its
  choosing: ``time.time_ns()`` for a create, ``max(time.time_ns(), old + 1)`` for a
  replace (decided under the lock below), and reads it back with ``fstat`` so the
  generation is what the file system stores even where timestamps are coarse. Nothing
  else is stored beside the object, and nothing writes to a file once published, so a
  generation read with the content (``fstat`` on the open descriptor) always matches
  it. Inode numbers alone would not do: a freed inode is reused, so a stale writer
  could succeed after ``A -> B -> A'`` (ABA). Per path, replacement generations
  strictly increase; a re-creation after ``delete`` takes the current clock.
- **Compare-and-swap under ``flock`` on the object itself.** ``put_if_generation``
  (and ``delete``) open the current file, take ``fcntl.flock(LOCK_EX)`` on it and then
  check that the path still names the locked inode (else it was replaced while we
  waited: retry on the new file). Only the holder of the current file's lock may
  replace or unlink it, so the compare and the ``os.replace`` are one atomic step for
  every process and thread (``flock`` locks belong to open file descriptions). An
  in-process lock striped by path also serialises threads, for file systems (NFS)
  where ``flock`` is emulated with per-process ``fcntl`` locks. ``put_if_absent``
  needs no lock: ``link`` is atomic.
- **Leftover temporary files.** A write killed between creating its temporary file
  and publishing it leaves the file behind: invisible (listing skips it) but taking
  space. `collect_temporary_files` removes those of dead processes of this host at
  once and any older than a safe age; the runner calls it for the engine's folders
  at startup and ``servo gc`` for the whole store.
- **Durability.** With ``fsync=True`` the temporary file is fsynced before it is
  published and the directory after, as are the parents of directories created.
  Parent directories are created lazily: the write is tried first, and only a
  missing directory costs extra system calls. Empty directories are left in place.

The file primitives live in `servo.storage._files`.

Limitation: on disk an object cannot share its name with a directory, so ``a`` and
``a/b`` cannot both exist; such a write fails with a `StorageError` naming the path.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from servo.errors import ObjectNotFoundError, PreconditionFailedError
from servo.storage import _files
from servo.storage._paths import TEMP_PREFIX, check_path, check_prefix
from servo.storage.base import StoredObject

_LOCK_STRIPES = 64
#: Age after which any temporary file is taken for abandoned (no write lasts an hour).
TEMP_MAX_AGE_S = 3600.0


class LocalObjectStore:
    """Objects as files under a root directory; safe across threads and processes.

    Args:
        root: directory holding the objects; created on the first write.
        fsync: make every write durable before returning (off only for throwaway data).
    """

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self._root = os.path.abspath(root)
        self._fsync = fsync
        self._stripes = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return Path(self._root)

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={self._root!r}, fsync={self._fsync})"

    def _file(self, path: str) -> str:
        check_path(path)
        return f"{self._root}/{path}"

    # -- writes ---------------------------------------------------------------------

    def put_if_absent(self, path: str, data: bytes) -> int:
        """Create `path` with `data`; return its generation.

        Raises:
            ObjectExistsError: an object is already at `path` (nothing is changed).
            StorageError: the path is invalid or the file system refused the write.
        """
        final = self._file(path)
        directory = final.rpartition("/")[0]
        temp, generation = _files.write_temp(directory, path, data, None, self._fsync)
        try:
            os.link(temp, final)
        except FileExistsError:
            conflict = _files.link_conflict(temp, final, path)
            if conflict is not None:
                raise conflict from None
        except OSError as exc:
            raise _files.error("create", path, exc) from exc
        finally:
            _files.discard(temp)
        if self._fsync:
            _files.sync_dir(directory, path)
        return generation

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        """Replace `path` only if its current generation equals `generation`.

        Returns:
            The new generation.

        Raises:
            PreconditionFailedError: the object changed since, or does not exist.
            StorageError: the path is invalid or the file system refused the write.
        """
        final = self._file(path)
        directory = final.rpartition("/")[0]
        with self._stripe(final):
            locked = _files.lock_current(final, path)
            if locked is None:
                raise PreconditionFailedError(
                    f"generation mismatch on {path}: expected {generation}, found None"
                )
            fd, current = locked
            try:
                if current != generation:
                    raise PreconditionFailedError(
                        f"generation mismatch on {path}: expected {generation}, found {current}"
                    )
                temp, new_generation = _files.write_temp(
                    directory, path, data, current, self._fsync
                )
                try:
                    os.replace(temp, final)
                except OSError as exc:
                    _files.discard(temp)
                    raise _files.error("replace", path, exc) from exc
                if self._fsync:
                    _files.sync_dir(directory, path)
                return new_generation
            finally:
                os.close(fd)  # releases the flock

    def delete(self, path: str) -> None:
        """Remove `path` if present; a missing object is not an error."""
        final = self._file(path)
        with self._stripe(final):
            locked = _files.lock_current(final, path)
            if locked is None:
                return
            fd, _ = locked
            try:
                os.unlink(final)
                if self._fsync:
                    _files.sync_dir(final.rpartition("/")[0], path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _files.error("delete", path, exc) from exc
            finally:
                os.close(fd)

    # -- reads ----------------------------------------------------------------------

    def get(self, path: str) -> StoredObject:
        """Read `path` and the generation of exactly those bytes.

        Raises:
            ObjectNotFoundError: nothing is stored at `path`.
        """
        final = self._file(path)
        try:
            fd = os.open(final, _files.OPEN_READ)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object at {path}") from None
        except OSError as exc:
            raise _files.error("read", path, exc) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ObjectNotFoundError(f"no object at {path} (it is a directory)")
            chunks = []  # one read, except for files too large for a single one
            remaining = info.st_size
            while remaining > 0 and (chunk := os.read(fd, remaining)):
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError as exc:
            raise _files.error("read", path, exc) from exc
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return StoredObject(data, info.st_mtime_ns)

    def head(self, path: str) -> int | None:
        """Return the generation of `path`, or None when it does not exist."""
        final = self._file(path)
        try:
            info = os.stat(final)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _files.error("stat", path, exc) from exc
        return info.st_mtime_ns if stat.S_ISREG(info.st_mode) else None

    def list_prefix(self, prefix: str) -> Iterator[str]:
        """Yield every path starting with `prefix` (literally), sorted.

        Directories are read one at a time, so memory stays bounded by the largest
        directory. Temporary files are skipped.
        """
        check_prefix(prefix)
        parent, _, first = prefix.rpartition("/")
        key_prefix = f"{parent}/" if parent else ""
        directory = f"{self._root}/{parent}" if parent else self._root
        return self._walk(directory, key_prefix, first)

    def _walk(self, directory: str, key_prefix: str, name_prefix: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as entries:
                found = [
                    (entry.name, entry.is_dir(follow_symlinks=False))
                    for entry in entries
                    if entry.name.startswith(name_prefix) and not entry.name.startswith(TEMP_PREFIX)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _files.error("list", key_prefix or "/", exc) from exc
        # A directory's keys all start with "name/", so sorting it as "name/" yields
        # the same order as sorting every key.
        found.sort(key=lambda item: item[0] + "/" if item[1] else item[0])
        for name, is_dir in found:
            if is_dir:
                yield from self._walk(f"{directory}/{name}", f"{key_prefix}{name}/", "")
            else:
                yield key_prefix + name

    # -- maintenance ----------------------------------------------------------------

    def collect_temporary_files(
        self, prefix: str = "", max_age_s: float = TEMP_MAX_AGE_S
    ) -> list[str]:
        """Remove temporary files that no live write owns, under `prefix`.

        A temporary file is removed when its writer was a process of this host that
        is gone, or when it is older than `max_age_s` (see
        `servo.storage._files.temp_is_abandoned`). Errors are logged and skipped:
        leftover files are harmless, only wasted space.

        Returns:
            The removed files, as paths relative to the root, sorted.
        """
        from servo.storage.temporary import collect_temporary_files

        return collect_temporary_files(self._root, prefix, max_age_s)

    # -- helpers --------------------------------------------------------------------

    def _stripe(self, final: str) -> threading.Lock:
        return self._stripes[hash(final) % _LOCK_STRIPES]
