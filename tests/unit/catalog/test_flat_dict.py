"""`flat_dict` is `dataclasses.asdict` for the flat specs the projector writes."""

from __future__ import annotations

from dataclasses import asdict

from servo.catalog.run_records import ExecutionSpec, MaterializationSpec, TaskSpec, flat_dict


def test_flat_dict_equals_asdict_for_every_spec() -> None:
    specs = (
        ExecutionSpec("r1", idempotency_key="k", status="RUNNING", n_tasks=3, requested_at=5),
        TaskSpec("r1", "a", "a", None, "SUCCEEDED", 1, 3, 1, 2, None, None, 7),
        MaterializationSpec("r1", "a", "values/a", format="pickle", row_count=7, size_bytes=9),
    )
    for spec in specs:
        made = flat_dict(spec)
        assert made == asdict(spec) and list(made) == list(asdict(spec))
        made["execution_id"] = "changed"  # a new dict each time
        assert flat_dict(spec)["execution_id"] == "r1"
