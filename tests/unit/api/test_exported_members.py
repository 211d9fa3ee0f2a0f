"""The public surface of ``servo`` is exactly what we mean to export, and ships typed."""

from __future__ import annotations

import importlib.resources
import types

import servo

INTENDED = [
    "AssetContext",
    "AssetDefinition",
    "AssetDep",
    "AssetError",
    "Definitions",
    "MaterializeResult",
    "RetryPolicy",
    "RunFailedError",
    "ServoError",
    "ValueNotFoundError",
    "__version__",
    "asset",
    "executor",
    "load_value",
    "materialize",
    "workflow",
]


#: Modules ``servo`` exports as names (``from servo import executor``).
PUBLIC_MODULES = ("executor",)


def test_servo_all_is_exactly_the_intended_public_names() -> None:
    assert sorted(servo.__all__) == INTENDED


def test_all_imports_are_exported() -> None:
    public = sorted(
        name
        for name, member in vars(servo).items()
        if (not name.startswith("_") or name == "__version__")
        # submodules are attributes once imported; only the public ones are exported
        and (not isinstance(member, types.ModuleType) or name in PUBLIC_MODULES)
        and name != "annotations"  # from __future__ import annotations
    )
    assert public == sorted(servo.__all__)


def test_every_public_member_belongs_to_servo() -> None:
    for name in servo.__all__:
        member = getattr(servo, name)
        if name == "__version__":
            assert isinstance(member, str)
            continue
        if isinstance(member, types.ModuleType):
            assert member.__name__ == f"servo.{name}"
            continue
        module = member.__module__
        assert module == "servo" or module.startswith("servo."), (name, module)


def test_the_package_is_marked_typed() -> None:
    assert (importlib.resources.files("servo") / "py.typed").is_file()
