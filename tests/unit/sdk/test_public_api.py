"""The public surface of ``servo`` is exactly what we mean to export."""

from __future__ import annotations

import subprocess
import sys

import servo
import servo.graph
import servo.sdk


def test_servo_all_is_exactly_the_public_api() -> None:
    assert sorted(servo.__all__) == [
        "AssetContext",
        "AssetDep",
        "Definitions",
        "RetryPolicy",
        "__version__",
        "asset",
        "workflow",
    ]
    for name in servo.__all__:
        assert hasattr(servo, name)


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
