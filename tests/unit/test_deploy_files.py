"""The Cloud Run deployment files (`deploy/cloud-run/`) hold together with the code.

Nothing here talks to Google Cloud: the files were written against Google's documented
interfaces and never run there (the doc says so). What is checked is everything that
can be checked offline:

- the Dockerfile parses into known instructions, starts FROM python:3.11-slim,
  installs the ``serverless`` extra, runs unprivileged, honours ``PORT`` and
  ``SERVO_ROLE``, and bakes no secret in;
- both manifests are Knative Services whose ``SERVO_*`` variables are real settings
  (`env_variables`) or variables the CLI or the image read, whose settings load,
  whose probes are routes the role's app serves, and whose numbers agree with each
  other (worker concurrency, request timeout and dispatch deadline, one reconciler);
- ``setup.sh`` passes ``bash -n``, and a dry run with a stand-in ``gcloud`` on
  ``PATH`` renders every placeholder, creates what the doc says, and never puts the
  database URL on a command line;
- the doc says plainly that none of it was run against Google Cloud.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from servo.config.settings import env_variables, load_settings
from servo.serve.app import create_app
from servo.serve.config import Role, ServeConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "cloud-run"
DOCKERFILE = DEPLOY / "Dockerfile"
SETUP = DEPLOY / "setup.sh"
DOC = ROOT / "docs" / "deploy" / "cloud-run.md"
MANIFESTS = {
    "worker": DEPLOY / "worker.service.yaml",
    "reconciler": DEPLOY / "reconciler.service.yaml",
}

#: Every instruction Dockerfile reference documents.
INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
#: Read by the image's own command, not by Servo.
IMAGE_VARIABLES = frozenset({"SERVO_ROLE"})
#: Settings whose value is a secret: never a literal in a manifest or the image.
SECRET_SETTINGS = frozenset(
    {"SERVO_DATABASE_URL", "SERVO_WORKER_HMAC_SECRET", "SERVO_METRICS_TOKEN"}
)
#: What setup.sh would put in the placeholders (any well-formed values do).
SAMPLE = {
    "IMAGE": "europe-west1-docker.pkg.dev/p/servo/servo:t",
    "PROJECT": "p",
    "REGION": "europe-west1",
    "BUCKET": "p-servo",
    "RUNTIME_SA": "servo-runtime@p.iam.gserviceaccount.com",
    "INVOKER_SA": "servo-invoker@p.iam.gserviceaccount.com",
    "WORKER_URL": "https://servo-worker-123.europe-west1.run.app",
    "RECONCILER_URL": "https://servo-reconciler-123.europe-west1.run.app",
    "DB_SECRET": "servo-database-url",
}
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


# ------------------------------------------------------------------ helpers
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments and blank lines dropped,
    backslash-continued lines joined. Raises ValueError on an unknown instruction."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if pending:
            pending += " " + stripped
        else:
            word = stripped.split(maxsplit=1)[0]
            if word.upper() not in INSTRUCTIONS:
                raise ValueError(f"line {number}: {word!r} is not a Dockerfile instruction")
            pending = stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, arguments = pending.partition(" ")
        instructions.append((word.upper(), arguments.strip()))
        pending = ""
    if pending:
        raise ValueError("the last instruction ends with a line continuation")
    return instructions


def env_names(arguments: str) -> list[str]:
    """The variable names an ENV or ARG instruction sets (``K=V K2=V2`` or ``K V``)."""
    if "=" not in arguments.split(maxsplit=1)[0]:
        return [arguments.split(maxsplit=1)[0]]
    return [part.split("=", 1)[0] for part in re.findall(r"\S+=(?:\"[^\"]*\"|\S*)", arguments)]


def cli_variables() -> set[str]:
    """``SERVO_*`` variables the CLI and the settings loader read besides the settings
    (``envvar="SERVO_..."`` options, ``environ.get("SERVO_...")``)."""
    pattern = re.compile(r"""(?:envvar=|environ\.get\(|environ\[)["'](SERVO_[A-Z0-9_]+)["']""")
    found: set[str] = set()
    for folder in ("cli", "config"):
        for path in (ROOT / "src" / "servo" / folder).rglob("*.py"):
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def manifest(role: str) -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFESTS[role].read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def container(doc: Mapping[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per service"
    result: dict[str, Any] = containers[0]
    return result


def literal_env(doc: Mapping[str, Any]) -> dict[str, str]:
    """The container's literal variables, placeholders filled with `SAMPLE`."""
    return {
        item["name"]: PLACEHOLDER.sub(lambda m: SAMPLE[m.group(1)], item["value"])
        for item in container(doc)["env"]
        if "value" in item
    }


class _Stub:
    """Stands in for the authenticator, limiter and runtime: routes only are read."""


def app_routes(role: Role) -> set[tuple[str, str]]:
    """(METHOD, path) of every route `servo serve --role {role}` answers."""
    config = ServeConfig(
        role=role,
        authenticator=_Stub(),  # type: ignore[arg-type]
        rate_limiter=_Stub(),  # type: ignore[arg-type]
        runtime=_Stub() if role == "worker" else None,  # type: ignore[arg-type]
    )
    return {
        (method, route.path)  # type: ignore[attr-defined]
        for route in create_app(config).routes
        for method in (route.methods or ())  # type: ignore[attr-defined]
    }


def setup_variable(name: str) -> str:
    match = re.search(rf'^{name}="([^"$]*)"$', SETUP.read_text(encoding="utf-8"), re.M)
    assert match, f"setup.sh does not set {name}"
    return match.group(1)


# ------------------------------------------------------------------ Dockerfile
def test_dockerfile_parses_into_known_instructions() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))

    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert {"CMD", "ENTRYPOINT"} & {name for name, _ in instructions}


def test_the_parser_refuses_what_is_not_a_dockerfile() -> None:
    with pytest.raises(ValueError, match="not a Dockerfile instruction"):
        parse_dockerfile("FROM scratch\nRUNN true\n")
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM scratch\nRUN true \\\n")
    assert parse_dockerfile("# c\nFROM a\nRUN x \\\n  # inside\n  y\n") == [
        ("FROM", "a"),
        ("RUN", "x y"),
    ]


def test_dockerfile_installs_the_serverless_extra_and_the_definitions() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    runs = [arguments for name, arguments in instructions if name == "RUN"]
    copies = [arguments for name, arguments in instructions if name == "COPY"]
    envs = [n for name, arguments in instructions if name == "ENV" for n in env_names(arguments)]

    assert any("pip install" in run and "'.[serverless]'" in run for run in runs)
    assert any(arg == "ARG" and "DEFINITIONS" in a for arg, a in instructions)
    assert any(copy.startswith("${DEFINITIONS} ") for copy in copies)
    assert "SERVO_DEFS" in envs


def test_dockerfile_runs_unprivileged_and_honours_port_and_role() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    users = [arguments for name, arguments in instructions if name == "USER"]
    (command,) = [arguments for name, arguments in instructions if name == "CMD"]
    argv = json.loads(command)  # exec form: signals reach the shell, which execs servo
    script = argv[-1]

    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert argv[:2] == ["sh", "-c"]
    assert script.startswith("exec servo serve ")
    assert "--role" in script and "${SERVO_ROLE" in script
    assert "--host 0.0.0.0" in script
    assert '--port "${PORT:-8080}"' in script


def test_dockerfile_bakes_no_secret_in_and_sets_only_known_variables() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    names = [
        n
        for name, arguments in instructions
        if name in {"ENV", "ARG"}
        for n in env_names(arguments)
    ]
    known = set(env_variables()) | cli_variables() | IMAGE_VARIABLES

    assert not [n for n in names if re.search("SECRET|TOKEN|PASSWORD|DATABASE_URL|KEY", n)]
    assert {n for n in names if n.startswith("SERVO_")} <= known


# ------------------------------------------------------------------ manifests
def test_the_cli_reads_the_variables_the_deployment_relies_on() -> None:
    """Guards `cli_variables`' grep: if it finds nothing, every check below is weaker."""
    assert {"SERVO_DEFS", "SERVO_CONFIG"} <= cli_variables()
    assert "SERVO_LOG_LEVEL" in env_variables()


@pytest.mark.parametrize("role", sorted(MANIFESTS))
def test_manifest_is_a_knative_service(role: str) -> None:
    doc = manifest(role)
    template = doc["spec"]["template"]

    assert doc["apiVersion"] == "serving.knative.dev/v1"
    assert doc["kind"] == "Service"
    assert doc["metadata"]["name"] == f"servo-{role}"
    assert doc["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    assert template["spec"]["serviceAccountName"] == "${RUNTIME_SA}"
    assert container(doc)["image"] == "${IMAGE}"
    assert isinstance(template["spec"]["containerConcurrency"], int)
    assert isinstance(template["spec"]["timeoutSeconds"], int)
    for key, value in template["metadata"]["annotations"].items():
        assert isinstance(value, str), f"annotation {key} must be a string"


@pytest.mark.parametrize("role", sorted(MANIFESTS))
def test_manifest_sets_only_real_settings(role: str) -> None:
    env = container(manifest(role))["env"]
    names = [item["name"] for item in env]
    known = set(env_variables()) | cli_variables() | IMAGE_VARIABLES

    assert len(names) == len(set(names)), "a variable is set twice"
    assert {n for n in names if n.startswith("SERVO_")} <= known, sorted(set(names) - known)
    for item in env:
        assert ("value" in item) != ("valueFrom" in item), item["name"]
        if "value" in item:
            assert isinstance(item["value"], str), f"{item['name']}: Cloud Run wants strings"
            assert item["name"] not in SECRET_SETTINGS, f"{item['name']} is a literal secret"
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert set(ref) == {"name", "key"}


@pytest.mark.parametrize("role", sorted(MANIFESTS))
def test_manifest_settings_load_and_name_this_role(role: str, tmp_path: Path) -> None:
    doc = manifest(role)
    env = literal_env(doc)
    empty = tmp_path / "config.yaml"
    empty.write_text("", encoding="utf-8")

    settings = load_settings(config_file=empty, environ=env)

    own_url = SAMPLE["WORKER_URL" if role == "worker" else "RECONCILER_URL"]
    assert env["SERVO_ROLE"] == role
    assert settings.cloud.provider == "gcp"
    assert settings.storage.backend == "gcs" and settings.storage.bucket
    assert settings.cloud.gcp.project and settings.cloud.gcp.region
    assert settings.cloud.cloud_run.worker_url == SAMPLE["WORKER_URL"]
    assert settings.cloud.cloud_run.reconciler_url == SAMPLE["RECONCILER_URL"]
    assert settings.cloud.cloud_tasks.service_account_email == SAMPLE["INVOKER_SA"]
    # Each push's audience is its target's URL (cloud_tasks.audience unset), so each
    # service expects its own URL, as Cloud Run's deterministic URL spells it.
    assert settings.cloud.cloud_tasks.audience is None
    assert settings.worker.oidc_audience == own_url
    assert settings.worker.allowed_service_accounts == (SAMPLE["INVOKER_SA"],)
    assert settings.worker.hmac_secret is None


@pytest.mark.parametrize("role", ["worker", "reconciler"])
def test_probes_are_routes_the_role_serves(role: Role) -> None:
    spec = container(manifest(role))
    routes = app_routes(role)
    (port,) = [p["containerPort"] for p in spec["ports"]]

    assert spec["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("startupProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert ("GET", get["path"]) in routes
        assert get["port"] == port


def test_worker_concurrency_and_timeout_match_its_settings() -> None:
    doc = manifest("worker")
    spec = doc["spec"]["template"]["spec"]
    env = literal_env(doc)

    assert spec["containerConcurrency"] == int(env["SERVO_WORKER_MAX_CONCURRENCY"])
    assert spec["timeoutSeconds"] == int(float(env["SERVO_CLOUD_CLOUD_TASKS_DISPATCH_DEADLINE_S"]))
    assert ("POST", "/execute") in app_routes("worker")


def test_one_reconciler_with_the_catalog_from_secret_manager() -> None:
    doc = manifest("reconciler")
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    env = {item["name"]: item for item in container(doc)["env"]}
    deadline = float(env["SERVO_CLOUD_CLOUD_TASKS_DISPATCH_DEADLINE_S"]["value"])

    assert annotations["autoscaling.knative.dev/maxScale"] == "1"
    assert doc["spec"]["template"]["spec"]["timeoutSeconds"] >= deadline
    assert env["SERVO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "${DB_SECRET}"


def test_both_roles_agree_on_queues_urls_and_bucket() -> None:
    shared = [
        name
        for name in literal_env(manifest("worker"))
        if name.startswith(("SERVO_CLOUD_", "SERVO_STORAGE_"))
    ]
    worker, reconciler = literal_env(manifest("worker")), literal_env(manifest("reconciler"))

    assert shared
    assert {n: worker[n] for n in shared} == {n: reconciler.get(n) for n in shared}


# ------------------------------------------------------------------ setup.sh
def test_setup_script_is_valid_bash() -> None:
    text = SETUP.read_text(encoding="utf-8")
    result = subprocess.run(["bash", "-n", str(SETUP)], check=False, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in text


def test_setup_script_agrees_with_the_manifests() -> None:
    text = SETUP.read_text(encoding="utf-8")
    placeholders = re.search(r"^PLACEHOLDERS=\(([^)]*)\)", text, re.M)
    worker = literal_env(manifest("worker"))

    assert placeholders
    rendered = set(placeholders.group(1).split())
    for role, path in MANIFESTS.items():
        used = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
        assert used <= rendered, f"{role}: setup.sh does not render {used - rendered}"
    assert setup_variable("WORKER_SERVICE") == manifest("worker")["metadata"]["name"]
    assert setup_variable("RECONCILER_SERVICE") == manifest("reconciler")["metadata"]["name"]
    assert setup_variable("TASKS_QUEUE") == worker["SERVO_CLOUD_CLOUD_TASKS_QUEUE"]
    assert setup_variable("TIMERS_QUEUE") == worker["SERVO_CLOUD_CLOUD_TASKS_TIMER_QUEUE"]
    assert setup_variable("RECONCILE_QUEUE") == worker["SERVO_CLOUD_CLOUD_TASKS_RECONCILE_QUEUE"]
    assert '--uri="${RECONCILER_URL}/internal/sweep"' in text
    assert ("POST", "/internal/sweep") in app_routes("reconciler")


FAKE_GCLOUD = """#!/usr/bin/env bash
# Stands in for gcloud: logs its arguments, knows nothing exists yet.
printf '%s\\n' "$*" >> "$FAKE_LOG"
case "$*" in
  "projects describe"*) echo 123456789012 ;;
  *" describe "*) exit 1 ;;
  *"--data-file=-"*) cat > /dev/null ;;
  "run services replace"*) cp "$4" "$FAKE_OUT/$(basename "$4")" ;;
esac
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_script_dry_run_with_a_stand_in_gcloud(tmp_path: Path) -> None:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD, encoding="utf-8")
    gcloud.chmod(0o755)
    log = tmp_path / "gcloud.log"
    secret = "postgresql://servo:s3cr3t-password@10.0.0.5/servo"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_OUT": str(out),
        "PROJECT": "p",
        "REGION": "europe-west1",
        "DATABASE_URL": secret,
        "DEFINITIONS": "examples/quickstart",
        "CLIENT_MEMBER": "user:me@example.com",
        "CLIENT_CONFIG": str(tmp_path / "client.yaml"),
        "TMPDIR": str(tmp_path),
    }

    result = subprocess.run(
        ["bash", str(SETUP)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    calls = log.read_text(encoding="utf-8")
    assert secret not in calls and secret not in result.stdout + result.stderr
    assert "tasks queues create servo-tasks" in calls
    assert "--max-concurrent-dispatches=40" in calls  # maxScale 10 x containerConcurrency 4
    for needle in (
        "tasks queues create servo-timers",
        "tasks queues create servo-reconcile",
        "secrets create servo-database-url",
        "--role=roles/cloudtasks.enqueuer",
        "--role=roles/iam.serviceAccountUser",
        "--role=roles/storage.objectAdmin",
        "--role=roles/secretmanager.secretAccessor",
        "run services add-iam-policy-binding servo-worker",
        "run services add-iam-policy-binding servo-reconciler",
        "--role=roles/run.invoker",
        "scheduler jobs create http servo-sweep",
        "--oidc-token-audience=https://servo-reconciler-123456789012.europe-west1.run.app",
    ):
        assert needle in calls, needle
    for role in MANIFESTS:
        text = (out / f"{role}.service.yaml").read_text(encoding="utf-8")
        assert not re.search(r"^[^#]*\$\{", text, re.M), f"{role}: a placeholder survived"
        doc = yaml.safe_load(text)
        assert container(doc)["image"].startswith("europe-west1-docker.pkg.dev/p/servo/servo:")
    client = load_settings(config_file=tmp_path / "client.yaml", environ={})
    assert client.cloud.provider == "gcp"
    assert client.cloud.cloud_run.reconciler_url == (
        "https://servo-reconciler-123456789012.europe-west1.run.app"
    )
    assert list(tmp_path.glob("servo-setup-*")) == [], "setup.sh left its temporary folder"


# ------------------------------------------------------------------ docs
def plain(markdown: str) -> str:
    """`markdown` as lower-case words: quote marks, emphasis and line breaks dropped."""
    return " ".join(re.sub(r"[>*_]", " ", markdown).split()).lower()


def test_the_doc_says_plainly_it_was_not_run_against_google_cloud() -> None:
    head = plain(DOC.read_text(encoding="utf-8").split("\n## ")[0])
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")

    assert "not been run against google cloud" in head
    assert "`servo emulate gcp`" in head
    assert "docs/deploy/cloud-run.md" in readme
    assert "not been run against google cloud" in plain(readme)


def test_the_doc_lists_every_variable_the_manifests_set() -> None:
    doc = DOC.read_text(encoding="utf-8")
    names = {item["name"] for role in MANIFESTS for item in container(manifest(role))["env"]}

    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"docs/deploy/cloud-run.md's settings table lacks {missing}"
