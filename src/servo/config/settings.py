"""Servo's settings, parsed once at an entry point and passed in.

Precedence: defaults < config file < environment variables.

Config file: the first that exists of `.servo/config.yaml` (under the working
directory), `~/.servo/config.yaml`, `/etc/servo/config.yaml`; or an explicit path
(`--config`, `SERVO_CONFIG`). When `SERVO_ENV` is set (dev, staging, prod),
`config.{env}.yaml` beside the chosen file is layered on top of it. `${VAR}` and
`${VAR:-default}` in file values are replaced from the environment.

Environment: every setting has one variable, `SERVO_` + its path joined by `_` and
upper-cased: `database.url` -> `SERVO_DATABASE_URL`,
`circuit_breaker.postgres.failure_threshold` is spelled
`SERVO_CB_POSTGRES_FAILURE_THRESHOLD` (the section's env prefix is `CB`).

Errors name the offending key and say what is expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servo.errors import ConfigError

SEARCH_PATHS = (
    Path(".servo/config.yaml"),
    Path("~/.servo/config.yaml"),
    Path("/etc/servo/config.yaml"),
)
ENVIRONMENTS = ("dev", "staging", "prod")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Override of the env-var segment for this section (default: the field name).
    env_prefix: ClassVar[str | None] = None


class LogSettings(_Section):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    format: Literal["json", "console"] = "console"


class StorageSettings(_Section):
    """Where the ledger, projections and asset values live."""

    backend: Literal["local", "memory", "gcs"] = "local"
    #: GCS bucket (backend gcs).
    bucket: str | None = None
    #: Key prefix inside the bucket or below the home directory.
    prefix: str = ""
    #: GCS API endpoint to use instead of Google's (fake-gcs-server on loopback);
    #: anonymous credentials are used with it.
    endpoint: str | None = None
    #: fsync files and directories on the local backend, so that what a run recorded
    #: survives a power loss or a kernel crash, not only a killed process. On by
    #: default; off trades that for speed in long chains of tiny assets (a torn file
    #: is then set aside at the next start, losing only the writes never synced).
    #: See ADR 0017.
    fsync: bool = True
    #: Seconds one GCS request may take (connect and read) before it fails.
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds the GCS client may spend retrying one call's transient failures in
    #: total (0: no retries inside the client; Servo's callers retry).
    retry_deadline_s: float = Field(default=60.0, ge=0, le=3600)


class DatabaseSettings(_Section):
    """The metadata catalog."""

    #: SQLAlchemy URL; unset means SQLite under the Servo home.
    url: str | None = None
    pool_size: int = Field(default=5, gt=0, le=1000)
    connection_timeout: float = Field(default=10.0, gt=0)


class BreakerSettings(_Section):
    """One dependency's circuit breaker."""

    failure_threshold: int = Field(default=5, gt=0)
    half_open_timeout_secs: float = Field(default=30.0, gt=0)
    success_threshold: int = Field(default=1, gt=0)


class CircuitBreakerSettings(_Section):
    """Circuit breakers per external dependency (`SERVO_CB_{DEP}_*`)."""

    env_prefix: ClassVar[str | None] = "CB"
    postgres: BreakerSettings = BreakerSettings()
    cloud_tasks: BreakerSettings = BreakerSettings()
    secret_manager: BreakerSettings = BreakerSettings()
    oauth2: BreakerSettings = BreakerSettings()


class EngineSettings(_Section):
    """Embedded engine tuning."""

    #: Merge L0 delta files into a new base once this many pile up.
    max_l0_files: int = Field(default=16, gt=0)


class GcpSettings(_Section):
    """The Google Cloud project Servo runs in (provider gcp)."""

    project: str | None = None
    region: str | None = None


class CloudTasksSettings(_Section):
    """Cloud Tasks queues of the serverless mode."""

    #: Queue of task dispatches (full name is built from gcp.project and gcp.region).
    queue: str = "servo-tasks"
    #: Queue of durable timers (`schedule_time`).
    timer_queue: str = "servo-timers"
    #: Queue of reconcile requests (worker reports, sweeps).
    reconcile_queue: str = "servo-reconcile"
    #: The queue's dispatch rate (Cloud Tasks caps it at 500).
    max_dispatches_per_second: float = Field(default=500.0, gt=0, le=500)
    #: Service account whose OIDC token Cloud Tasks attaches to each push.
    service_account_email: str | None = None
    #: Audience of that token; the receiving service's URL if unset.
    audience: str | None = None
    #: Seconds a push may take before Cloud Tasks gives up on it (15 s to 30 min).
    dispatch_deadline_s: float = Field(default=600.0, ge=15, le=1800)
    #: gRPC endpoint of a Cloud Tasks server to use instead of Google's (the local
    #: server of `servo.testing.cloud_tasks`); plaintext, loopback only.
    emulator_host: str | None = None
    #: Seconds one Cloud Tasks call may take in total.
    timeout_s: float = Field(default=10.0, gt=0)


class CloudRunSettings(_Section):
    """Cloud Run services the queues push to."""

    worker_url: str | None = None
    reconciler_url: str | None = None
    #: Peers whose ``X-Forwarded-For`` names the client (comma-separated addresses,
    #: or ``*``): per-IP limits and logs then see the caller, not the front end.
    #: ``*`` on Cloud Run, whose front end is the only way in and sets the header.
    forwarded_allow_ips: str = "127.0.0.1"


class CelerySettings(_Section):
    """The Celery edge (provider celery): broker and queues."""

    #: The broker: RabbitMQ (``amqp://``) by default, Redis (``redis://``) supported.
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    #: Queue of task dispatches (the workers' ``servo.execute``).
    queue: str = "servo-tasks"
    #: Queue of reconcile steps: reports, timers, sweeps (the reconciler worker).
    reconcile_queue: str = "servo-reconcile"
    #: Longest countdown of one timer message; a later timer is re-armed in hops
    #: (a Redis broker redelivers an unacked message after its visibility timeout).
    max_eta_s: float = Field(default=3000.0, gt=0)
    #: Seconds a broker connection or publish may take.
    timeout_s: float = Field(default=10.0, gt=0)


class CloudSettings(_Section):
    """Where tasks run: in this process, on Cloud Run through Cloud Tasks, or Celery."""

    provider: Literal["local", "gcp", "celery"] = "local"
    gcp: GcpSettings = GcpSettings()
    cloud_tasks: CloudTasksSettings = CloudTasksSettings()
    celery: CelerySettings = CelerySettings()
    cloud_run: CloudRunSettings = CloudRunSettings()


class WorkerSettings(_Section):
    """How `servo serve` authenticates pushes and runs tasks."""

    #: Shared secret of HMAC-signed requests; unset: HMAC is not accepted.
    hmac_secret: str | None = None
    #: Seconds an HMAC signature's timestamp may differ from now (replay window).
    hmac_window_s: float = Field(default=300.0, gt=0)
    #: Expected `aud` of OIDC ID tokens; unset: OIDC is not accepted.
    oidc_audience: str | None = None
    #: Accepted `iss` values of OIDC ID tokens.
    oidc_issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
    #: Where the issuer publishes its signing keys (JWKS).
    oidc_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    #: Service-account emails whose tokens are accepted; empty: any verified email.
    allowed_service_accounts: tuple[str, ...] = ()
    #: Seconds of clock skew tolerated on `exp`, `iat` and `nbf`.
    clock_skew_s: float = Field(default=30.0, ge=0, le=300)
    #: Tasks one worker instance runs at once; beyond it /execute answers 503.
    max_concurrency: int = Field(default=4, gt=0, le=1000)
    #: Run attempts planned with other definitions instead of failing them with
    #: `code_version_mismatch`.
    accept_code_version_mismatch: bool = False

    @field_validator("oidc_issuers", "allowed_service_accounts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """An environment variable lists several values separated by commas."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class ReconcilerSection(_Section):
    """How the reconciler of the scale-out modes judges time (`servo serve`)."""

    #: Seconds a worker's report may take to reach the reconciler through the queue;
    #: due timers wait this long past their due time before judging an attempt.
    report_lag_s: float = Field(default=2.0, ge=0, le=600)
    #: Seconds an attempt may stay silent before it is given up and redelivered.
    heartbeat_timeout_s: float = Field(default=60.0, gt=0)
    #: Seconds an enqueued attempt may wait to start before it is redelivered (a
    #: push the queue lost).
    start_deadline_s: float = Field(default=120.0, gt=0)
    #: Seconds a READY task or a PENDING dispatch may wait before the sweep drives it.
    ready_deadline_s: float = Field(default=5.0, gt=0)
    #: Seconds past due after which the sweep delivers a timer itself.
    timer_grace_s: float = Field(default=1.0, gt=0)
    #: Workspaces one reconciler instance keeps loaded at once.
    max_workspaces: int = Field(default=64, gt=0)


class RateLimitSettings(_Section):
    """Rate limits of `servo serve` (`limits` library)."""

    #: Requests per second and tenant on /execute (after authentication).
    tenant_rps: float = Field(default=10.0, gt=0)
    #: Requests per minute and client IP on /metrics.
    metrics_rpm: int = Field(default=60, gt=0)
    #: `limits` storage URI: `memory://` (per instance) or `redis://host:port` (global).
    storage_url: str = "memory://"


class MetricsSettings(_Section):
    """The /metrics endpoint."""

    #: Bearer token /metrics requires; unset: open (still rate-limited).
    token: str | None = None


class Settings(_Section):
    """Every Servo setting. Build with `load_settings`."""

    #: Servo home: local ledger, projections, values and SQLite catalog.
    home: Path = Path(".servo")
    #: Deployment environment, selects `config.{env}.yaml`.
    env: Literal["dev", "staging", "prod"] | None = None
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    engine: EngineSettings = EngineSettings()
    cloud: CloudSettings = CloudSettings()
    worker: WorkerSettings = WorkerSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    reconciler: ReconcilerSection = ReconcilerSection()
    metrics: MetricsSettings = MetricsSettings()


def _env_names(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield (ENV_NAME, field path) for every leaf setting of `model`."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            segment = annotation.env_prefix or name.upper()
            for env, path in _env_names(annotation, f"{prefix}{segment}_"):
                yield env, (name, *path)
        else:
            yield f"{prefix}{name.upper()}", (name,)


def env_variables() -> dict[str, tuple[str, ...]]:
    """Every `SERVO_*` variable Servo reads, mapped to its setting path."""
    return dict(_env_names(Settings, "SERVO_"))


def _substitute(value: Any, environ: Mapping[str, str], key: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, environ, f"{key}.{k}" if key else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, environ, key) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{key}: environment variable {name} is not set (used as ${{{name}}})")

    return _VAR.sub(replace, value)


def _read_yaml(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    result: dict[str, Any] = _substitute(loaded, environ, "")
    return result


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` layered over `base`: nested mappings merge, other values replace."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def find_config_file(environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: explicit `SERVO_CONFIG`, else the first found."""
    explicit = environ.get("SERVO_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"SERVO_CONFIG: no config file at {path}")
        return path
    for candidate in SEARCH_PATHS:
        path = candidate.expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.is_file():
            return path
    return None


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node: Any = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{part}: must be a mapping of settings, not {type(node).__name__}")
    node[path[-1]] = value


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build `Settings` from defaults, the config file, the environment and overrides.

    Raises:
        ConfigError: a file or value is invalid; the message names the key.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    path = config_file if config_file is not None else find_config_file(environ, cwd)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path, environ)
        env_name = environ.get("SERVO_ENV") or data.get("env")
        if env_name:
            layered = path.with_name(f"{path.stem}.{env_name}{path.suffix}")
            if layered.is_file():
                data = deep_merge(data, _read_yaml(layered, environ))
    for env_var, setting_path in env_variables().items():
        if env_var in environ:
            _set_path(data, setting_path, environ[env_var])
    data = deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _describe(exc: ValidationError, path: Path | None) -> str:
    env_by_path = {p: e for e, p in env_variables().items()}
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        env = env_by_path.get(loc)
        where = f" (or {env})" if env else ""
        problems.append(f"{key}{where}: {error['msg']}")
    source = f" in {path}" if path else ""
    return f"invalid settings{source}: " + "; ".join(problems)
