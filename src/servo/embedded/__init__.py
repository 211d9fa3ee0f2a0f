"""Running assets in this process: the code path ``servo materialize`` and the Python API share.

- `servo.embedded.session`: `run_assets` (store, catalog, embedded runner, wait), used
  by the CLI and by `materialize`.
- `servo.embedded.materialize`: `servo.materialize`, returning a `MaterializeResult`
  (`servo.embedded.result`).
- `servo.embedded.values`: `servo.load_value`, a materialized value from a home.

Importing this package stays light: the engine, pyarrow and the catalog load when a
run starts or a value is read.
"""

from __future__ import annotations

from servo.embedded.materialize import materialize
from servo.embedded.result import AssetError, MaterializeResult
from servo.embedded.values import load_value

__all__ = ["AssetError", "MaterializeResult", "load_value", "materialize"]
