"""Executors: where a workflow's tasks run (``@workflow(executor=...)``).

    from servo import executor, workflow

    @workflow(executor=executor.CloudRun(project="acme", region="europe-west1"))
    def nightly():
        report(clean(raw()))

- `Local()`: in the process that drives the run (the embedded mode's pool).
- `CloudRun(project, region, worker_url=None, queue=None)`: Cloud Run workers fed by
  Cloud Tasks (``cloud.provider: gcp``). The project, region and queue name the Cloud
  Tasks queue, the worker URL the service; each left out comes from the ``cloud``
  settings, so one deployment can send a workflow to its own service or queue.
- `Celery(queue="servo")`: Celery workers (``cloud.provider: celery``).

A workflow without an executor runs where the configuration sends every task. The
embedded mode runs every task in its own process, whatever the executor says (the
same definitions are tried on a laptop before they are deployed); the serverless
mode runs `CloudRun` workflows and refuses a run that needs another executor before
anything starts (`check_servable`), naming the workflow and what to do.

An executor is recorded as its `spec` text (``cloud_run:project=acme,region=...``),
which the catalog keeps with the workflow's version and `parse_executor` reads back;
the plain kind names (``local``, ``cloud_run``, ``celery``) are specs too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

from servo.errors import ConfigError

__all__ = [
    "KINDS",
    "Celery",
    "CloudRun",
    "Executor",
    "Local",
    "check_servable",
    "dispatchable",
    "parse_executor",
]


@dataclass(frozen=True, slots=True)
class Executor:
    """Base of the executors; `kind` names it in specs and settings."""

    kind: ClassVar[str] = ""

    @property
    def spec(self) -> str:
        """The canonical text of this executor (kind, then its set options sorted)."""
        options = [
            f"{f.name}={value}"
            for f in sorted(fields(self), key=lambda f: f.name)
            if (value := getattr(self, f.name)) is not None
        ]
        return self.kind + (":" + ",".join(options) if options else "")

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(self.kind, f.name, getattr(self, f.name), ",=:/")


def _check(kind: str, name: str, value: object, forbidden: str) -> None:
    """An option is None or a non-empty str without the spec's separators."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"executor {kind}: {name} must be a non-empty str, not {value!r}")
    if any(c in value for c in forbidden):
        raise ValueError(f"executor {kind}: {name} may not contain any of {forbidden!r}")


E = TypeVar("E", bound="Executor")


@dataclass(frozen=True, slots=True)
class Local(Executor):
    """Tasks run in the process that drives the run."""

    kind: ClassVar[str] = "local"


@dataclass(frozen=True, slots=True)
class CloudRun(Executor):
    """Tasks run on Cloud Run workers fed by Cloud Tasks (see the module docstring).

    Attributes:
        project: the Google Cloud project of the queue (default: ``cloud.gcp.project``).
        region: its region (default: ``cloud.gcp.region``).
        worker_url: the worker service's URL (default: ``cloud.cloud_run.worker_url``).
        queue: the Cloud Tasks queue (default: ``cloud.cloud_tasks.queue``).
    """

    kind: ClassVar[str] = "cloud_run"
    project: str | None = None
    region: str | None = None
    worker_url: str | None = None
    queue: str | None = None

    def __post_init__(self) -> None:
        for name in ("project", "region", "queue"):
            _check(self.kind, name, getattr(self, name), ",=:/")
        _check(self.kind, "worker_url", self.worker_url, ",")


@dataclass(frozen=True, slots=True)
class Celery(Executor):
    """Tasks run on Celery workers consuming `queue`."""

    kind: ClassVar[str] = "celery"
    queue: str | None = None


#: Executor classes by kind.
KINDS: Mapping[str, type[Executor]] = {k.kind: k for k in (Local, CloudRun, Celery)}


def parse_executor(spec: str) -> Executor:
    """The executor a `spec` text names (``kind`` or ``kind:name=value,...``).

    Raises:
        ValueError: unknown kind or option, or a malformed spec; says what is valid.
    """
    kind, _, rest = spec.partition(":")
    found = KINDS.get(kind.strip())
    if found is None:
        raise ValueError(f"unknown executor {kind!r}: use one of {', '.join(sorted(KINDS))}")
    options: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        name, equals, value = part.partition("=")
        if not equals:
            raise ValueError(f"executor {spec!r}: expected name=value, not {part!r}")
        options[name.strip()] = value.strip()
    known = {f.name for f in fields(found)}
    unknown = sorted(set(options) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ValueError(f"executor {kind}: unknown option {unknown[0]!r} (options: {allowed})")
    return found(**options)


#: The executors each ``cloud.provider`` can run tasks on.
SERVED_BY: Mapping[str, tuple[str, ...]] = {
    "local": tuple(KINDS),  # the embedded mode runs every task in its process
    "gcp": ("cloud_run",),
    "celery": ("celery",),
}


def check_servable(executors: Iterable[tuple[str, str | None]], provider: str) -> None:
    """Refuse a run whose workflows need an executor `provider` does not run.

    Args:
        executors: (workflow name, executor spec or None) of the run's workflows.
        provider: ``cloud.provider``.

    Raises:
        ConfigError: names the first workflow that cannot run, and what to do.
    """
    served = SERVED_BY.get(provider, ())
    for workflow, spec in executors:
        if spec is None:
            continue
        kind = parse_executor(spec).kind
        if kind not in served:
            raise ConfigError(
                f"workflow {workflow!r} runs on executor {kind}, but cloud.provider "
                f"{provider!r} runs tasks on {', '.join(served) or 'none'}: drop the "
                f"workflow's executor or point SERVO_CLOUD_PROVIDER at a deployment "
                f"with {kind} workers"
            )


def dispatchable(spec: str, kind: type[E], edge: str) -> E:
    """The executor `spec` names, which must be a `kind` for `edge` to dispatch to it.

    Raises:
        ConfigError: the spec is malformed or names another kind of executor.
    """
    try:
        chosen = parse_executor(spec)
    except ValueError as exc:
        raise ConfigError(f"cannot dispatch to executor {spec!r}: {exc}") from exc
    if not isinstance(chosen, kind):
        raise ConfigError(
            f"cannot dispatch to executor {chosen.kind} through {edge}: it sends tasks to "
            f"{kind.kind} executors only"
        )
    return chosen
