"""`servo.materialize`: run assets from Python, as ``servo materialize`` does.

    import servo

    result = servo.materialize([raw_orders, revenue_by_region])
    assert result.success
    assert result.value("revenue_by_region") == {"eu": 12.5, "us": 7.0}

``home=None`` (the default) runs in a fresh in-memory home: nothing is read from or
written to disk, no catalog is used, and two calls never see each other's runs, so a
test needs no setup. ``home=PATH`` runs in that Servo home exactly as ``servo
materialize --home PATH`` does (settings from the environment and config file, the
object store and catalog they configure; the run shows in ``servo runs list``),
through the same code path (`servo.embedded.session.run_assets`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from servo.embedded.result import MaterializeResult
from servo.errors import ConfigError, DefinitionError, RunFailedError, SelectionError
from servo.sdk.asset import definition_of
from servo.sdk.definitions import Definitions

if TYPE_CHECKING:
    from servo.config.settings import Settings


def _definitions(assets_or_definitions: object) -> Definitions:
    if isinstance(assets_or_definitions, Definitions):
        return assets_or_definitions
    if definition_of(assets_or_definitions) is not None:
        return Definitions(assets=[assets_or_definitions])
    if isinstance(assets_or_definitions, str | bytes) or not isinstance(
        assets_or_definitions, Iterable
    ):
        raise DefinitionError(
            "materialize() takes a Definitions or a list of @asset functions, not "
            f"{type(assets_or_definitions).__name__}"
        )
    return Definitions(assets=list(assets_or_definitions))


def _selection(selection: str | Iterable[str] | None) -> str | None:
    if selection is None:
        return None
    selectors = [selection] if isinstance(selection, str) else list(selection)
    for selector in selectors:
        if not isinstance(selector, str):
            raise SelectionError(
                f"a selection is a string or a list of strings, not {type(selector).__name__}"
            )
    joined = " ".join(s.strip() for s in selectors if s.strip())
    if not joined:
        raise SelectionError(
            "empty selection; pass selection=None for every asset, or selectors such as "
            "'report', '+report' or 'raw+'"
        )
    return joined


def home_settings(home: str | os.PathLike[str]) -> Settings:
    """The settings ``servo ... --home HOME`` would use (environment, config file)."""
    from servo.config.settings import load_settings

    return load_settings().model_copy(update={"home": Path(home)})


def materialize(
    assets_or_definitions: Definitions | Iterable[object] | object,
    selection: str | Iterable[str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    tenant: str = "default",
    concurrency: int = 4,
    idempotency_key: str | None = None,
    processes: bool = False,
    raise_on_error: bool = False,
) -> MaterializeResult:
    """Run assets in this process and wait for the run to end.

    Args:
        assets_or_definitions: a `Definitions`, or a list of ``@asset`` functions (or
            `AssetDefinition` objects); every upstream asset must be in it.
        selection: which assets to run, in the CLI's selector syntax (``"report"``,
            ``"+report"``, ``"raw+"``, ``"*"``), as one string or a list of selectors;
            None runs every asset.
        home: None for a fresh in-memory home; a directory to run in that Servo home
            exactly as ``servo materialize --home DIR`` does.
        tenant: tenant of the run.
        concurrency: assets running at once (>= 1).
        idempotency_key: run again with the same key (in the same home) to resume the
            run, not repeat it.
        processes: run assets in worker processes (needs `home` and definitions
            loaded from a file with `servo.sdk.load_definitions`).
        raise_on_error: raise `RunFailedError` when any asset did not succeed.

    Returns:
        The run's `MaterializeResult`: ``success``, ``run_id``, ``status(asset)``,
        ``value(asset)``, ``errors``.

    Raises:
        DefinitionError: the assets cannot be planned (the message names the asset).
        SelectionError: the selection does not parse or names an unknown asset.
        RunFailedError: with `raise_on_error`, an asset failed, was skipped or cancelled.
        ConfigError: the home's settings cannot be used.
    """
    from servo.embedded.session import RunRequest, run_assets

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1, not {concurrency!r}")
    definitions = _definitions(assets_or_definitions)
    request = RunRequest(
        selection=_selection(selection),
        idempotency_key=idempotency_key,
        tenant=tenant,
        concurrency=concurrency,
        processes=processes,
    )
    settings = None if home is None else home_settings(home)
    result = MaterializeResult(run_assets(definitions, request, settings))
    if raise_on_error and not result.success:
        raise RunFailedError(result.failure_message(), result)
    return result
