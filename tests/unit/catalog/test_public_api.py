"""The public surface of ``servo.catalog`` is what we mean, and loads SQLAlchemy lazily."""

from __future__ import annotations

import subprocess
import sys

import servo.catalog
from servo.catalog.catalog import SqlCatalog


def test_every_exported_name_resolves() -> None:
    for name in servo.catalog.__all__:
        assert getattr(servo.catalog, name) is not None, name
    assert servo.catalog.SqlCatalog is SqlCatalog


def test_sqlalchemy_loads_on_first_use_of_a_lazy_name() -> None:
    code = (
        "import sys, servo.catalog as c; before = 'sqlalchemy' in sys.modules; "
        "c.open_catalog; print(before, 'sqlalchemy' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
