"""The code version of loaded definitions: which code a run was planned with.

A run records the version of the definitions it was planned from
(`RunRequested.code_version`); a worker whose definitions have another version fails
the run's attempts with the non-retryable ``code_version_mismatch`` instead of
running code the run was not planned with (`servo.worker.runtime`), unless it is
configured to accept it (``worker.accept_code_version_mismatch``).

The version is a SHA-256 over the asset names and the content of every source file
that defines an asset function (not the files' paths: a container and a laptop keep
the same code in different folders). A function without a source file (built at
run time) contributes its compiled code. Changing any line of a file that defines
an asset — a helper included — changes the version; code imported from other files
does not.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Bump when what the version covers changes.
_FORMAT = b"servo-code-1"
#: Hex digits kept: enough to tell versions apart, short enough to read in a log.
LENGTH = 16


def code_version(functions: Iterable[tuple[str, Any]]) -> str:
    """The version of (asset name, function) pairs (see the module docstring)."""
    names = hashlib.sha256(_FORMAT)
    files: dict[str, None] = {}
    compiled: list[bytes] = []
    for name, fn in sorted(functions, key=lambda item: item[0]):
        names.update(name.encode("utf-8") + b"\x00")
        code = getattr(inspect.unwrap(fn), "__code__", None)
        filename = getattr(code, "co_filename", None)
        if filename is not None and filename not in files and Path(filename).is_file():
            files[filename] = None
        elif filename is None or filename not in files:
            compiled.append(marshal.dumps(code) if code is not None else repr(fn).encode())
    digests = sorted(hashlib.sha256(Path(f).read_bytes()).digest() for f in files)
    for part in (*digests, *sorted(compiled)):
        names.update(part)
    return names.hexdigest()[:LENGTH]
