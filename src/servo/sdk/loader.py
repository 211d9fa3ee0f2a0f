"""Load a project's `Definitions` from a file, a directory or a module name.

Targets:

- ``path/to/file.py``: the file is executed as a module; its directory is put on
  ``sys.path`` first so sibling imports work.
- ``path/to/dir``: the directory's ``definitions.py``, loaded as above.
- ``package.module``: imported with the normal import system.

An existing path wins over a module of the same name. From the loaded module, the
module-level `Definitions` object is taken if there is exactly one (more than one
is an error); otherwise every module-level ``@asset`` and ``@workflow`` function
(imported ones included, deduplicated by identity) is gathered into a new one.
The returned object's ``source`` is the absolute file path or the module name, so
a worker process can call `load_definitions(defs.source)` to get the same
definitions. Every failure is a one-line `DefinitionError` naming the target.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
import types
from pathlib import Path

from servo.errors import DefinitionError, ServoError
from servo.sdk.asset import definition_of
from servo.sdk.definitions import Definitions
from servo.sdk.workflow import workflow_of

#: The file loaded when the target is a directory.
DEFAULT_FILE = "definitions.py"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    summary = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__


def _location(exc: BaseException, directory: Path | None) -> str:
    """``file:line`` of the most useful frame: a syntax error's, else the innermost
    frame in the target's directory, else the innermost non-frozen frame."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if directory is not None:
        inside = [f for f in frames if Path(f.filename).parent == directory]
        frames = inside or frames
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _describe(target: str, exc: BaseException, directory: Path | None) -> str:
    where = _location(exc, directory)
    return f"cannot load {target}: {_first_line(exc)}" + (f" ({where})" if where else "")


def _module_name(file: Path) -> str:
    """The file's stem, unless another module already uses it; then a unique name."""
    stem = file.stem
    existing = sys.modules.get(stem)
    if stem.isidentifier() and (
        existing is None or getattr(existing, "__file__", None) == str(file)
    ):
        return stem
    digest = hashlib.sha1(str(file).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"_servo_definitions_{digest}"


def _exec_file(target: str, path: Path) -> tuple[types.ModuleType, str]:
    if path.is_dir():
        file = path / DEFAULT_FILE
        if not file.is_file():
            raise DefinitionError(f"no {DEFAULT_FILE} in directory {target}")
    elif path.is_file():
        file = path
    else:
        raise DefinitionError(f"definitions file not found: {target}")
    file = file.resolve()
    directory = str(file.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot load {target}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the module is always executed afresh
    try:
        spec.loader.exec_module(module)
    except ServoError:
        sys.modules.pop(name, None)
        raise
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise DefinitionError(_describe(target, exc, file.parent)) from exc
    return module, str(file)


def _import(target: str) -> types.ModuleType:
    try:
        return importlib.import_module(target)
    except ServoError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            raise DefinitionError(
                f"cannot load {target}: no such file, directory or module"
            ) from exc
        raise DefinitionError(_describe(target, exc, None)) from exc
    except (Exception, SystemExit) as exc:
        raise DefinitionError(_describe(target, exc, None)) from exc


def _collect(module: types.ModuleType, target: str) -> Definitions:
    namespace = vars(module)
    found: dict[int, tuple[str, Definitions]] = {}
    for key, value in namespace.items():
        if isinstance(value, Definitions):
            found.setdefault(id(value), (key, value))
    if len(found) > 1:
        names = ", ".join(key for key, _ in found.values())
        raise DefinitionError(
            f"{target}: {len(found)} Definitions objects found ({names}); keep exactly one"
        )
    if found:
        return next(iter(found.values()))[1]
    assets: dict[int, object] = {}
    workflows: dict[int, object] = {}
    for value in namespace.values():
        if isinstance(value, type | types.ModuleType):
            continue
        definition = definition_of(value)
        if definition is not None:
            assets.setdefault(id(definition), definition)
            continue
        flow = workflow_of(value)
        if flow is not None:
            workflows.setdefault(id(flow), flow)
    if not assets and not workflows:
        raise DefinitionError(
            f"{target}: no assets found; decorate functions with @asset "
            "or define a Definitions object"
        )
    return Definitions(assets=assets.values(), workflows=workflows.values())


def load_definitions(target: str | os.PathLike[str]) -> Definitions:
    """Load the `Definitions` at `target` (a .py file, a directory or a module name).

    Raises:
        DefinitionError: the target does not exist, fails to import (the message
            gives the exception's one-line summary and file:line), holds no assets
            or several `Definitions` objects, or the definitions are invalid.
        CycleError: the dependencies form a cycle.
    """
    text = os.fspath(target)
    if not text.strip():
        raise DefinitionError("no definitions target given")
    path = Path(text)
    looks_like_path = text.endswith(".py") or "/" in text or os.sep in text
    if looks_like_path or path.exists():
        module, source = _exec_file(text, path)
    else:
        module, source = _import(text), text
    definitions = _collect(module, text)
    definitions.source = source
    return definitions
