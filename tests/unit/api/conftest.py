"""Every Python API test runs in its own directory with no ``SERVO_*`` settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SERVO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
