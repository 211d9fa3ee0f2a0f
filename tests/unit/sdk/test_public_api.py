"""The SDK objects ``servo`` re-exports (its exact surface: tests/unit/api)."""

from __future__ import annotations

import subprocess
import sys

import servo
import servo.graph
import servo.sdk


def test_public_names_are_the_sdk_objects() -> None:
    assert servo.asset is servo.sdk.asset
    assert servo.workflow is servo.sdk.workflow
    assert servo.Definitions is servo.sdk.Definitions
    assert servo.AssetDep is servo.sdk.AssetDep


def test_sdk_and_graph_all_resolve() -> None:
    for module in (servo.sdk, servo.graph):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_import_servo_stays_light() -> None:
    heavy = ("pyarrow", "pydantic", "yaml", "structlog", "prometheus_client", "typer", "rich")
    code = f"import sys, servo; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
