"""Settings: defaults < file < environment, substitution, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo.config.settings import env_variables, load_settings
from servo.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.home == Path(".servo")
    assert settings.database.url is None
    assert settings.circuit_breaker.postgres.failure_threshold == 5
    assert settings.circuit_breaker.oauth2.half_open_timeout_secs == 30.0


def test_file_in_working_directory_then_environment_wins(tmp_path: Path) -> None:
    write(tmp_path / ".servo/config.yaml", "database:\n  url: sqlite:///file.db\n  pool_size: 3\n")
    settings = load_settings(environ={"SERVO_DATABASE_URL": "postgresql://env"}, cwd=tmp_path)
    assert settings.database.url == "postgresql://env"
    assert settings.database.pool_size == 3


def test_variable_substitution_with_default(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml", "database:\n  url: postgresql://${DB_HOST}/${DB_NAME:-servo}\n"
    )
    settings = load_settings(config_file=config, environ={"DB_HOST": "db"}, cwd=tmp_path)
    assert settings.database.url == "postgresql://db/servo"


def test_missing_substitution_variable_names_key_and_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "database:\n  url: ${NOPE}\n")
    with pytest.raises(ConfigError, match=r"database\.url: environment variable NOPE is not set"):
        load_settings(config_file=config, environ={}, cwd=tmp_path)


def test_environment_file_is_layered_on_top(tmp_path: Path) -> None:
    base = write(tmp_path / "config.yaml", "log:\n  level: INFO\n  format: console\n")
    write(tmp_path / "config.prod.yaml", "log:\n  format: json\n")
    settings = load_settings(config_file=base, environ={"SERVO_ENV": "prod"}, cwd=tmp_path)
    assert (settings.log.level, settings.log.format) == ("INFO", "json")


def test_env_named_in_the_file_selects_the_layered_file(tmp_path: Path) -> None:
    base = write(tmp_path / "config.yaml", "env: staging\nlog:\n  level: INFO\n")
    write(tmp_path / "config.staging.yaml", "log:\n  level: DEBUG\n")
    write(tmp_path / "config.prod.yaml", "log:\n  level: ERROR\n")
    settings = load_settings(config_file=base, environ={}, cwd=tmp_path)
    assert (settings.env, settings.log.level) == ("staging", "DEBUG")
    overridden = load_settings(config_file=base, environ={"SERVO_ENV": "prod"}, cwd=tmp_path)
    assert (overridden.env, overridden.log.level) == ("prod", "ERROR")


def test_zero_is_rejected_with_key_and_variable_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"SERVO_CB_POSTGRES_FAILURE_THRESHOLD": "0"}, cwd=tmp_path)
    message = str(info.value)
    assert "circuit_breaker.postgres.failure_threshold" in message
    assert "SERVO_CB_POSTGRES_FAILURE_THRESHOLD" in message


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "databse:\n  url: x\n")
    with pytest.raises(ConfigError, match="databse"):
        load_settings(config_file=config, environ={}, cwd=tmp_path)


def test_invalid_yaml_and_non_mapping_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_file=write(tmp_path / "a.yaml", "a: [\n"), environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(config_file=write(tmp_path / "b.yaml", "- 1\n"), environ={}, cwd=tmp_path)
    bad_section = write(tmp_path / "c.yaml", "database: 3\n")
    with pytest.raises(ConfigError, match="database"):
        load_settings(config_file=bad_section, environ={"SERVO_DATABASE_URL": "x"}, cwd=tmp_path)


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SERVO_CONFIG: no config file"):
        load_settings(environ={"SERVO_CONFIG": str(tmp_path / "none.yaml")}, cwd=tmp_path)


def test_contract_variable_names_exist() -> None:
    names = env_variables()
    for name in (
        "SERVO_HOME",
        "SERVO_DATABASE_URL",
        "SERVO_CB_POSTGRES_FAILURE_THRESHOLD",
        "SERVO_CB_CLOUD_TASKS_HALF_OPEN_TIMEOUT_SECS",
        "SERVO_CB_SECRET_MANAGER_FAILURE_THRESHOLD",
        "SERVO_CB_OAUTH2_HALF_OPEN_TIMEOUT_SECS",
    ):
        assert name in names
