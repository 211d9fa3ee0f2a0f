"""The `@asset` decorator and the frozen `AssetDefinition` it attaches.

``@asset`` (bare or with options) validates the function when the decorator runs,
attaches an `AssetDefinition` at ``fn._servo_asset`` and returns the function
unchanged: it stays a plain callable.

Dependency rules:

1. ``dependencies=None`` (the default): dependencies are inferred from the
   parameters. Every parameter without a default becomes a ``data`` dependency on
   the asset of that name. Parameters with a default are not inferred; ``*args``
   and ``**kwargs`` are never inferred.
2. ``dependencies=[...]`` (explicit): items are asset names, `AssetDep` objects
   (``AssetDep("b", type="control")``) or other ``@asset`` functions. Every
   parameter without a default must then name a ``data`` dependency; otherwise the
   decorator fails ("parameter 'p' matches no dependency").
3. A parameter named ``context`` is reserved for the run context: it is never a
   dependency, and receives the context when the asset runs.
4. Values: upstream values of ``data`` dependencies are passed as keyword arguments
   to the parameters of the same name (to every ``data`` dependency if the function
   takes ``**kwargs``). ``metadata`` and ``control`` dependencies only order
   execution. `AssetDefinition.call` is the one code path that does this.
5. ``async def`` functions are assets too: `AssetDefinition.call` awaits the
   coroutine in a fresh event loop per attempt and cancels it when the attempt is
   asked to stop (`servo.sdk._async`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, overload

from servo.errors import DefinitionError
from servo.resilience.retry import RetryPolicy
from servo.sdk import _validate
from servo.sdk._async import run_coroutine
from servo.sdk._signature import FunctionSignature, first_doc_line, inspect_function
from servo.sdk.dependency import AssetDep

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of a decorated function that holds its `AssetDefinition`.
ASSET_ATTR = "_servo_asset"


@dataclass(frozen=True, slots=True)
class AssetDefinition:
    """One asset: a function, what it depends on, and how it runs.

    Build it with the `asset` decorator, which validates every field.

    Attributes:
        name: unique asset name (``^[A-Za-z_][A-Za-z0-9_]{0,127}$``).
        fn: the user function, unchanged.
        dependencies: upstream assets, in declaration order.
        params: names of the ``data`` dependencies passed as keyword arguments.
        description: free text; defaults to the first line of the docstring.
        owner: who answers for the asset (a person or team), if set.
        tags: free-form string labels.
        asset_type: a kind label such as ``table`` or ``model``, if set.
        retry: the retry policy, if set (None: one attempt).
        timeout: seconds one attempt may run, if set.
        takes_context: the function declares a ``context`` parameter.
    """

    name: str
    fn: Callable[..., Any]
    dependencies: tuple[AssetDep, ...] = ()
    params: tuple[str, ...] = ()
    description: str | None = None
    owner: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    asset_type: str | None = None
    retry: RetryPolicy | None = field(default=None, hash=False)
    timeout: float | None = None
    takes_context: bool = False

    @property
    def qualified_name(self) -> str:
        """``module.qualname`` of the function, to tell definitions apart in messages."""
        module = getattr(self.fn, "__module__", None) or "?"
        qualname = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"{module}.{qualname}"

    @property
    def dependency_names(self) -> tuple[str, ...]:
        """Names of all upstream assets, in declaration order."""
        return tuple(dep.name for dep in self.dependencies)

    def call(self, upstream_values: Mapping[str, Any], context: object | None = None) -> Any:
        """Run the function with the upstream values it takes.

        A coroutine function (or a function returning a coroutine) is awaited in a
        fresh event loop, and cancelled when the context's ``stop_event`` is set.

        Args:
            upstream_values: upstream asset name -> value; must hold every name in
                `params` (extra entries are ignored).
            context: passed as ``context=`` when the function declares it; its
                ``stop_event`` (if any) stops a coroutine.

        Raises:
            DefinitionError: an upstream value named in `params` is missing.
            AttemptStoppedError: a coroutine was cancelled (the attempt was stopped).
        """
        try:
            kwargs = {param: upstream_values[param] for param in self.params}
        except KeyError as exc:
            raise DefinitionError(
                f"asset {self.name!r}: no upstream value for {exc.args[0]!r}"
            ) from None
        if self.takes_context:
            kwargs["context"] = context
        result = self.fn(**kwargs)
        if not inspect.iscoroutine(result):
            return result
        stop_event = getattr(context, "stop_event", None)
        if not isinstance(stop_event, threading.Event):
            stop_event = None
        return run_coroutine(result, stop_event, f"asset {self.name!r}")


#: What ``dependencies=[...]`` accepts: names, `AssetDep`, definitions or ``@asset`` functions.
DependencyLike = str | AssetDep | AssetDefinition | Callable[..., Any]


def _to_dep(item: object, owner: str) -> AssetDep:
    if isinstance(item, AssetDep):
        dep = item
    elif isinstance(item, str):
        dep = AssetDep(item)
    elif isinstance(item, AssetDefinition):
        dep = AssetDep(item.name)
    elif isinstance(getattr(item, ASSET_ATTR, None), AssetDefinition):
        dep = AssetDep(getattr(item, ASSET_ATTR).name)
    else:
        raise DefinitionError(
            f"{owner}: a dependency must be an asset name, an AssetDep or an @asset "
            f"function, not {type(item).__name__}"
        )
    _validate.check_name(dep.name, owner, "dependency name")
    return dep


def _resolve_dependencies(
    name: str, dependencies: object, signature: FunctionSignature
) -> tuple[tuple[AssetDep, ...], tuple[str, ...]]:
    """The dependencies and the passed parameter names, following the module rules."""
    owner = f"asset {name!r}"
    if dependencies is None:
        deps = tuple(
            AssetDep(_validate.check_name(param, owner, "dependency name (from a parameter)"))
            for param in signature.required
        )
    elif isinstance(dependencies, str | bytes) or not isinstance(dependencies, Iterable):
        raise DefinitionError(
            f"{owner}: dependencies must be a list of asset names or AssetDep, "
            f"not {type(dependencies).__name__}"
        )
    else:
        deps = tuple(_to_dep(item, owner) for item in dependencies)
    seen: dict[str, str] = {}
    for dep in deps:
        if dep.name == name:
            raise DefinitionError(f"{owner} depends on itself")
        if dep.name in seen:
            raise DefinitionError(f"{owner}: dependency {dep.name!r} is listed twice")
        seen[dep.name] = dep.type
    for param in signature.required:
        dep_type = seen.get(param)
        if dep_type is None:
            raise DefinitionError(
                f"{owner}: parameter {param!r} matches no dependency; "
                "add it to dependencies=[...] or give it a default"
            )
        if dep_type != "data":
            raise DefinitionError(
                f"{owner}: parameter {param!r} names a {dep_type} dependency, which passes "
                "no value; make it a data dependency or give the parameter a default"
            )
    data = [dep.name for dep in deps if dep.type == "data"]
    params = data if signature.takes_kwargs else [n for n in data if signature.accepts(n)]
    return deps, tuple(param for param in params if param != "context")


def _define(fn: Callable[..., Any], options: dict[str, Any]) -> AssetDefinition:
    if not callable(fn):
        raise DefinitionError(
            f"@asset must decorate a function, not {type(fn).__name__}; "
            "pass options by keyword: @asset(name='x')"
        )
    default_name = getattr(fn, "__name__", None)
    name = options["name"] if options["name"] is not None else default_name
    label = name if isinstance(name, str) else repr(fn)
    owner = f"asset {label!r}"
    _validate.check_name(name, owner)
    assert isinstance(name, str)
    existing = getattr(fn, ASSET_ATTR, None)
    if isinstance(existing, AssetDefinition):
        raise DefinitionError(f"{owner}: the function is already asset {existing.name!r}")
    _validate.partitions(options["partitions"], owner)
    signature = inspect_function(fn, owner)
    dependencies, params = _resolve_dependencies(name, options["dependencies"], signature)
    description = _validate.optional_str(options["description"], "description", owner)
    return AssetDefinition(
        name=name,
        fn=fn,
        dependencies=dependencies,
        params=params,
        description=description if description is not None else first_doc_line(fn),
        owner=_validate.optional_str(options["owner"], "owner", owner),
        tags=MappingProxyType(_validate.tags(options["tags"], owner)),
        asset_type=_validate.optional_str(options["asset_type"], "asset_type", owner),
        retry=_validate.retry(options["retry"], owner),
        timeout=_validate.timeout(options["timeout"], owner),
        takes_context=signature.takes_context,
    )


def _attach(fn: F, options: dict[str, Any]) -> F:
    definition = _define(fn, options)
    try:
        setattr(fn, ASSET_ATTR, definition)
    except (AttributeError, TypeError) as exc:
        raise DefinitionError(
            f"asset {definition.name!r}: cannot attach the definition to "
            f"{type(fn).__name__}; decorate a plain function"
        ) from exc
    return fn


@overload
def asset(fn: F, /) -> F: ...


@overload
def asset(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    dependencies: Iterable[DependencyLike] | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: Mapping[str, str] | None = None,
    asset_type: str | None = None,
    retry: object | None = None,
    timeout: float | None = None,
    partitions: None = None,
) -> Callable[[F], F]: ...


def asset(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    dependencies: Iterable[DependencyLike] | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: Mapping[str, str] | None = None,
    asset_type: str | None = None,
    retry: object | None = None,
    timeout: float | None = None,
    partitions: None = None,
) -> Any:
    """Mark a function as an asset; use bare (``@asset``) or with options.

    Args:
        fn: the function, when used bare.
        name: asset name; defaults to the function name.
        dependencies: upstream assets; None infers them from the parameters (see the
            module docstring for the rules).
        description: defaults to the first line of the docstring.
        owner: a person or team.
        tags: string labels.
        asset_type: a kind label such as ``table``.
        retry: a retry policy.
        timeout: seconds (> 0) one attempt may run.
        partitions: reserved; only None is accepted for now.

    Returns:
        The function itself, with its `AssetDefinition` at ``fn._servo_asset``.

    Raises:
        DefinitionError: an option or the signature is invalid; the message names
            the asset.
    """
    options: dict[str, Any] = {
        "name": name,
        "dependencies": dependencies,
        "description": description,
        "owner": owner,
        "tags": tags,
        "asset_type": asset_type,
        "retry": retry,
        "timeout": timeout,
        "partitions": partitions,
    }
    if fn is not None:
        return _attach(fn, options)

    def decorate(func: F) -> F:
        return _attach(func, options)

    return decorate


def definition_of(obj: object) -> AssetDefinition | None:
    """The `AssetDefinition` of an ``@asset`` function or a definition itself, else None."""
    if isinstance(obj, AssetDefinition):
        return obj
    found = getattr(obj, ASSET_ATTR, None)
    return found if isinstance(found, AssetDefinition) else None
