"""Executor objects (`servo.executor`): what `@workflow(executor=...)` takes, how it is
recorded, and which deployments can run it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo import Definitions, asset, executor, workflow
from servo.errors import ConfigError, DefinitionError
from servo.executor import CloudRun, parse_executor


@asset
def raw() -> int:
    return 1


@asset
def clean(raw: int) -> int:
    return raw + 1


def test_a_workflow_records_the_spec_of_its_executor_object() -> None:
    chosen = executor.CloudRun(project="acme", region="europe-west1", queue="nightly")

    @workflow(executor=chosen)
    def nightly() -> None:
        clean(raw())

    definition = Definitions(workflows=[nightly]).workflows["nightly"]
    assert definition.executor == "cloud_run:project=acme,queue=nightly,region=europe-west1"
    assert parse_executor(definition.executor) == chosen


def test_kind_names_are_specs_too() -> None:
    assert parse_executor("local") == executor.Local()
    assert parse_executor("celery:queue=etl") == executor.Celery(queue="etl")
    assert parse_executor("cloud_run") == executor.CloudRun()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kubernetes", "unknown executor 'kubernetes': use one of celery, cloud_run, local"),
        ("cloud_run:zone=x", "unknown option 'zone'"),
        ("cloud_run:project", "expected name=value"),
        ("local:queue=q", "unknown option 'queue' (options: none)"),
    ],
)
def test_a_bad_spec_names_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_executor(spec)


def test_options_are_checked_when_the_object_is_made() -> None:
    with pytest.raises(ValueError, match="project must be a non-empty str"):
        executor.CloudRun(project="")
    with pytest.raises(ValueError, match="queue may not contain"):
        executor.Celery(queue="a,b")


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)


@given(
    project=st.none() | _names,
    region=st.none() | _names,
    queue=st.none() | _names,
    url=st.none() | _names.map(lambda n: f"https://{n}.run.app:443/x?y=1"),
)
def test_every_cloud_run_executor_reads_back_from_its_spec(
    project: str | None, region: str | None, queue: str | None, url: str | None
) -> None:
    made = CloudRun(project=project, region=region, queue=queue, worker_url=url)
    assert parse_executor(made.spec) == made


def test_one_asset_cannot_run_on_two_executors() -> None:
    @workflow(executor="cloud_run")
    def first() -> None:
        raw()

    @workflow(executor="celery")
    def second() -> None:
        clean(raw())

    with pytest.raises(DefinitionError, match="asset 'raw' is in workflow 'first'"):
        Definitions(workflows=[first, second])


def test_each_asset_knows_the_workflow_and_executor_it_runs_on() -> None:
    @workflow(executor=executor.CloudRun(queue="nightly"))
    def nightly() -> None:
        clean(raw())

    @asset
    def loose() -> int:
        return 0

    defs = Definitions(assets=[loose], workflows=[nightly])
    assert defs.executor_of("raw") == ("nightly", "cloud_run:queue=nightly")
    assert defs.executor_of("loose") is None


def test_a_deployment_refuses_a_run_it_cannot_serve_before_it_starts() -> None:
    executor.check_servable([("w", None), ("nightly", "cloud_run")], "gcp")
    executor.check_servable([("nightly", "celery"), ("x", "cloud_run")], "local")
    with pytest.raises(ConfigError, match="workflow 'etl' runs on executor celery"):
        executor.check_servable([("etl", "celery")], "gcp")
    with pytest.raises(ConfigError, match="runs tasks on cloud_run"):
        executor.check_servable([("here", "local")], "gcp")
