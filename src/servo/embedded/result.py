"""`MaterializeResult`: what `servo.materialize` returns, and `AssetError`.

A result is read-only and answers from the run as it ended: `success`, `run_id`,
`statuses` / `status(asset)`, `errors` (type, message and traceback per asset that
did not succeed) and `value(asset)`, which loads the asset's stored value from the
run's home (the in-memory home stays alive as long as the result does).

Assets are named by their name or by their ``@asset`` function. A name that is not
in the run raises `SelectionError` with the closest name as a suggestion; asking for
the value of an asset that did not succeed raises `ValueNotFoundError` naming its
status and error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from servo.errors import SelectionError, ValueNotFoundError
from servo.graph.suggest import did_you_mean
from servo.sdk.asset import definition_of

if TYPE_CHECKING:
    from servo.embedded.session import RunOutcome

_SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class AssetError:
    """Why one asset did not succeed: the error of its last attempt.

    Attributes:
        type: the exception's type (qualified outside builtins), or the engine's
            reason (``timeout``, ``heartbeat_timeout``, ``cancelled``, ...).
        message: the error message.
        traceback: the formatted traceback, or None when the engine ended the attempt
            (timeout, cancellation) rather than the asset raising.
        attempt: the attempt (1-based) that ended with this error.
    """

    type: str
    message: str
    traceback: str | None
    attempt: int

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def asset_name(asset: object) -> str:
    """The name of an asset given by name, ``@asset`` function or `AssetDefinition`.

    Raises:
        TypeError: `asset` is none of these.
    """
    if isinstance(asset, str):
        return asset
    definition = definition_of(asset)
    if definition is None:
        raise TypeError(
            f"name an asset by its name or its @asset function, not {type(asset).__name__}"
        )
    return definition.name


class MaterializeResult:
    """The outcome of one `servo.materialize` run (see the module docstring)."""

    __slots__ = ("_errors", "_outcome", "_statuses")

    def __init__(self, outcome: RunOutcome) -> None:
        self._outcome = outcome
        self._statuses: Mapping[str, str] = MappingProxyType(
            {t.task_key: t.status.lower() for t in outcome.tasks}
        )
        errors: dict[str, AssetError] = {}
        for task in outcome.tasks:
            if task.error_type is None or task.status.lower() == _SUCCEEDED:
                continue
            attempt = outcome.attempts.get(task.task_key)
            errors[task.task_key] = AssetError(
                type=task.error_type,
                message=task.error_message or "",
                traceback=None if attempt is None else attempt.error_traceback,
                attempt=task.attempt,
            )
        self._errors: Mapping[str, AssetError] = MappingProxyType(errors)

    @property
    def run_id(self) -> str:
        """The run (``servo runs show RUN_ID`` in a home on disk)."""
        return self._outcome.run.run_id

    @property
    def success(self) -> bool:
        """Whether every selected asset succeeded."""
        return self._outcome.run.status.lower() == _SUCCEEDED

    @property
    def run_status(self) -> str:
        """The run's status: ``succeeded``, ``failed`` or ``cancelled``."""
        return self._outcome.run.status.lower()

    @property
    def resumed(self) -> bool:
        """An earlier run with the same idempotency key was found and finished."""
        return self._outcome.resumed

    @property
    def statuses(self) -> Mapping[str, str]:
        """Asset name -> status (``succeeded``, ``failed``, ``skipped``, ``cancelled``)."""
        return self._statuses

    @property
    def errors(self) -> Mapping[str, AssetError]:
        """Asset name -> its error, for every asset that failed or was cancelled."""
        return self._errors

    def status(self, asset: object) -> str:
        """The status of `asset` (a name or an ``@asset`` function) in this run.

        Raises:
            SelectionError: the asset is not in this run.
        """
        return self._statuses[self._known(asset)]

    def value(self, asset: object) -> Any:
        """The value `asset` (a name or an ``@asset`` function) materialized, in its type.

        Raises:
            SelectionError: the asset is not in this run.
            ValueNotFoundError: the asset did not succeed in this run.
        """
        from servo.sdk.io import read_value

        name = self._known(asset)
        task = next(t for t in self._outcome.tasks if t.task_key == name)
        if task.output_location is None or task.output_format is None:
            raise ValueNotFoundError(self._no_value(name))
        return read_value(self._outcome.store, task.output_location, task.output_format)

    def _known(self, asset: object) -> str:
        name = asset_name(asset)
        if name not in self._statuses:
            raise SelectionError(
                f"asset {name!r} is not in run {self.run_id}{did_you_mean(name, self._statuses)}"
                f" (its assets: {', '.join(self._statuses)})"
            )
        return name

    def _no_value(self, name: str) -> str:
        status = self._statuses[name]
        error = self._errors.get(name)
        if error is not None:
            why = f": {error}"
        elif status == "skipped":
            failed = [n for n, s in self._statuses.items() if s in ("failed", "cancelled")]
            why = f" because an upstream asset did not succeed ({', '.join(failed)})"
        else:
            why = ""
        verb = "failed" if status == "failed" else f"was {status}"
        return f"asset {name!r} has no value: it {verb} in run {self.run_id}{why}"

    def failure_message(self) -> str:
        """One paragraph naming every asset that did not succeed and its error."""
        parts = []
        for name, status in self._statuses.items():
            if status == _SUCCEEDED:
                continue
            error = self._errors.get(name)
            parts.append(f"{name} {status}" + (f" ({error})" if error is not None else ""))
        return (
            f"run {self.run_id} {self.run_status}: {'; '.join(parts)}; "
            "the tracebacks are in the result's .errors"
        )

    def __repr__(self) -> str:
        return (
            f"MaterializeResult(run_id={self.run_id!r}, success={self.success}, "
            f"statuses={dict(self._statuses)!r})"
        )
