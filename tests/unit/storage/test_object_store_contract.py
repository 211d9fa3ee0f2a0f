"""The object store contract, run against the memory and local backends."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from servo.storage import LocalObjectStore, MemoryObjectStore
from tests.unit.storage.contract import ObjectStoreContract, StoreFactory


class TestMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return MemoryObjectStore


class TestLocalObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        counter = itertools.count()
        return lambda: LocalObjectStore(tmp_path / f"store-{next(counter)}", fsync=False)


class TestLocalObjectStoreWithFsync(ObjectStoreContract):
    model_examples = 10

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        counter = itertools.count()
        return lambda: LocalObjectStore(tmp_path / f"store-{next(counter)}", fsync=True)
