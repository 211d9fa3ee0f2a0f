"""The `@workflow` decorator: a named group of assets and the executor that runs them.

The assets of a workflow are discovered WITHOUT calling the function: its bytecode
(and the bytecode of nested functions, lambdas and comprehensions) is scanned for
the names it loads, which are resolved in the function's globals, its closure
cells, and as attributes of modules (``pipelines.orders.clean``). Every value that
is an ``@asset`` function or an `AssetDefinition` is one of the workflow's assets,
kept in first-reference order.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from servo.errors import DefinitionError
from servo.sdk import _validate
from servo.sdk._signature import first_doc_line
from servo.sdk.asset import AssetDefinition, definition_of

if TYPE_CHECKING:
    from servo.executor import Executor

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of a decorated function that holds its `WorkflowDefinition`.
WORKFLOW_ATTR = "_servo_workflow"

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_DEREF_OPS = frozenset({"LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_CLOSURE"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow: the assets its function references and where they run.

    Attributes:
        name: unique workflow name (same rule as asset names).
        fn: the user function, unchanged (never called by discovery).
        executor: the spec text of the executor its tasks run on
            (`servo.executor`: ``cloud_run:project=...``), or None for the default.
        assets: the assets the function references, in first-reference order.
        description: free text; defaults to the first line of the docstring.
    """

    name: str
    fn: Callable[..., Any]
    executor: str | None
    assets: tuple[AssetDefinition, ...]
    description: str | None = None

    @property
    def asset_names(self) -> tuple[str, ...]:
        """Names of the workflow's assets, in first-reference order."""
        return tuple(a.name for a in self.assets)


def _closure_values(fn: types.FunctionType) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            values[var] = cell.cell_contents
        except ValueError:  # an empty cell: the variable is not bound yet
            continue
    return values


def _referenced_values(fn: types.FunctionType) -> Iterator[Any]:
    """Yield the values `fn`'s code loads, in bytecode order, without calling it.

    Iterative over nested code objects (depth-first, at the point each is loaded).
    """
    globals_ = fn.__globals__
    closure = _closure_values(fn)
    stack = [iter(dis.get_instructions(fn.__code__))]
    seen_code: set[types.CodeType] = {fn.__code__}
    while stack:
        previous: Any = None  # the value the previous instruction loaded, for LOAD_ATTR
        for ins in stack[-1]:
            value: Any = None
            if ins.opname in _GLOBAL_OPS:
                value = globals_.get(ins.argval)
            elif ins.opname in _DEREF_OPS:
                value = closure.get(ins.argval)
            elif ins.opname in _ATTR_OPS and isinstance(previous, types.ModuleType):
                value = getattr(previous, ins.argval, None)
            elif (
                ins.opname == "LOAD_CONST"
                and isinstance(ins.argval, types.CodeType)
                and ins.argval not in seen_code
            ):
                seen_code.add(ins.argval)
                stack.append(iter(dis.get_instructions(ins.argval)))
                break
            if value is not None:
                yield value
            previous = value
        else:
            stack.pop()


def discover_assets(fn: Callable[..., Any]) -> tuple[AssetDefinition, ...]:
    """The assets `fn` references, in first-reference order, found without calling it."""
    if not isinstance(fn, types.FunctionType):
        return ()
    found: dict[int, AssetDefinition] = {}
    for value in _referenced_values(fn):
        definition = definition_of(value)
        if definition is not None and id(definition) not in found:
            found[id(definition)] = definition
    return tuple(found.values())


def _executor_spec(owner: str, executor: object) -> str | None:
    """The spec text of an `Executor` object or a spec string (None: the default)."""
    from servo.executor import Executor, parse_executor

    if executor is None:
        return None
    if isinstance(executor, Executor):
        return executor.spec
    if not isinstance(executor, str) or not executor:
        raise DefinitionError(
            f"{owner}: executor must be an executor (servo.executor.CloudRun(...), "
            f"Local(), Celery(...)) or a non-empty str, not {executor!r}"
        )
    try:
        return parse_executor(executor).spec
    except (ValueError, TypeError) as exc:
        raise DefinitionError(f"{owner}: {exc}") from exc


def _attach(fn: F, name: str | None, executor: Executor | str | None) -> F:
    if not callable(fn):
        raise DefinitionError(
            f"@workflow must decorate a function, not {type(fn).__name__}; "
            "pass options by keyword: @workflow(name='x')"
        )
    chosen = name if name is not None else getattr(fn, "__name__", None)
    owner = f"workflow {chosen if isinstance(chosen, str) else repr(fn)!r}"
    _validate.check_name(chosen, owner)
    assert isinstance(chosen, str)
    spec = _executor_spec(owner, executor)
    assets = discover_assets(fn)
    if not assets:
        raise DefinitionError(f"{owner} calls no assets")
    definition = WorkflowDefinition(
        name=chosen,
        fn=fn,
        executor=spec,
        assets=assets,
        description=first_doc_line(fn),
    )
    try:
        setattr(fn, WORKFLOW_ATTR, definition)
    except (AttributeError, TypeError) as exc:
        raise DefinitionError(f"{owner}: decorate a plain function") from exc
    return fn


@overload
def workflow(fn: F, /) -> F: ...


@overload
def workflow(
    fn: None = None, /, *, name: str | None = None, executor: Executor | str | None = None
) -> Callable[[F], F]: ...


def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    executor: Executor | str | None = None,
) -> Any:
    """Mark a function as a workflow; use bare (``@workflow``) or with options.

    Args:
        fn: the function, when used bare.
        name: workflow name; defaults to the function name.
        executor: where the workflow's tasks run (`servo.executor`): an executor
            object or its spec text (``"cloud_run"``); None means the configured
            default.

    Returns:
        The function itself, with its `WorkflowDefinition` at ``fn._servo_workflow``.

    Raises:
        DefinitionError: invalid options, or the function references no asset.
    """
    if fn is not None:
        return _attach(fn, name, executor)

    def decorate(func: F) -> F:
        return _attach(func, name, executor)

    return decorate


def workflow_of(obj: object) -> WorkflowDefinition | None:
    """The `WorkflowDefinition` of a ``@workflow`` function or a definition, else None."""
    if isinstance(obj, WorkflowDefinition):
        return obj
    found = getattr(obj, WORKFLOW_ATTR, None)
    return found if isinstance(found, WorkflowDefinition) else None
