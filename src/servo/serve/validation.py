"""Validate an /execute body into a `TaskRequest`, or list every problem found.

`TaskRequest.from_dict` trusts its input (the engine made it); at the HTTP edge a
body may be anything, so each field is checked here first and every problem is
reported at once as ``{"field", "code", "message"}`` (SPEC §9). Codes:

- ``invalid_json``: the body is not JSON; ``invalid_type``: a value of the wrong type;
- ``missing``: a required field is absent; ``unexpected``: a field TaskRequest lacks;
- ``invalid_value``: the right type, but not a usable value (out of range, a path
  separator in an id, an invalid retry policy).

Ids that become parts of object paths (tenant, workspace, run, attempt) are checked
for characters that would change the path. The table of fields is checked against
the dataclass by a test, so a field added to `TaskRequest` must be added here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from servo.engine.request import InputRef, TaskRequest
from servo.errors import ConfigError
from servo.resilience.retry import RetryPolicy

#: Tenant and workspace ids (as `servo.engine.ledger.validate_scope_id` requires).
SCOPE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Longest id or key accepted.
MAX_ID_CHARS = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of the body (an entry of SPEC §9's ``details``)."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class RequestInvalid(Exception):
    """The body is not a valid TaskRequest; `problems` says why, field by field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


Check = Callable[[str, Any], list[FieldProblem]]


def type_problems(name: str, value: Any, kinds: tuple[type, ...], what: str) -> list[FieldProblem]:
    if isinstance(value, bool) and bool not in kinds:
        return [FieldProblem(name, "invalid_type", f"must be {what}, not a boolean")]
    if not isinstance(value, kinds):
        return [FieldProblem(name, "invalid_type", f"must be {what}, not {_json_type(value)}")]
    return []


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def text_problems(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (str,), "a string")
    if problems:
        return problems
    if not value:
        return [FieldProblem(name, "invalid_value", "must not be empty")]
    if len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        return [
            FieldProblem(
                name,
                "invalid_value",
                f"must be at most {MAX_ID_CHARS} characters, without control characters",
            )
        ]
    return []


def scope_id_problems(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (str,), "a string")
    if not problems and not SCOPE_ID.fullmatch(value):
        problems.append(
            FieldProblem(
                name,
                "invalid_value",
                "use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'",
            )
        )
    return problems


def _path_segment(name: str, value: Any) -> list[FieldProblem]:
    problems = text_problems(name, value)
    if not problems and ("/" in value or "\\" in value or value in (".", "..")):
        problems.append(
            FieldProblem(name, "invalid_value", "must not contain '/' or '\\' or be '.' or '..'")
        )
    return problems


def _optional(check: Check) -> Check:
    def optional(name: str, value: Any) -> list[FieldProblem]:
        return [] if value is None else check(name, value)

    return optional


def _attempt(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (int,), "an integer")
    if not problems and value < 1:
        problems.append(FieldProblem(name, "invalid_value", "must be 1 or more"))
    return problems


def _timeout(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (int, float), "a number")
    if not problems and not (math.isfinite(value) and value > 0):
        problems.append(FieldProblem(name, "invalid_value", "must be a finite number above 0"))
    return problems


def _inputs(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (list,), "an array")
    if problems:
        return problems
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        fields = {"name": text_problems, "location": text_problems, "format": text_problems}
        problems += object_problems(where, item, fields)
    return problems


def _ids(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (list,), "an array")
    if problems:
        return problems
    for index, item in enumerate(value):
        problems += _path_segment(f"{name}[{index}]", item)
    return problems


def _retry(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (dict,), "an object")
    if problems:
        return problems
    try:
        RetryPolicy.from_dict(value)
    except (ConfigError, ValueError, TypeError) as exc:
        # Our own messages (parameter names and ranges): nothing secret in them.
        problems.append(FieldProblem(name, "invalid_value", str(exc)[:300]))
    return problems


#: Every TaskRequest field: its check, and whether it may be omitted.
FIELDS: dict[str, tuple[Check, bool]] = {
    "tenant_id": (scope_id_problems, False),
    "workspace_id": (scope_id_problems, False),
    "run_id": (_path_segment, False),
    "task_key": (text_problems, False),
    "asset_key": (text_problems, False),
    "partition_key": (_optional(text_problems), False),
    "attempt": (_attempt, False),
    "attempt_id": (_path_segment, False),
    "dispatch_id": (text_problems, False),
    "cloud_task_id": (text_problems, False),
    "inputs": (_inputs, True),
    "timeout_s": (_optional(_timeout), True),
    "defs_source": (_optional(text_problems), True),
    "reusable_attempt_ids": (_ids, True),
    "retry": (_optional(_retry), True),
    "code_version": (_optional(text_problems), True),
    "executor": (_optional(text_problems), True),
}


def object_problems(
    where: str, value: Any, checks: Mapping[str, Check], optional: frozenset[str] = frozenset()
) -> list[FieldProblem]:
    problems = type_problems(where or "body", value, (dict,), "an object")
    if problems:
        return problems
    prefix = f"{where}." if where else ""
    for key in value:
        if key not in checks:
            problems.append(FieldProblem(f"{prefix}{key}", "unexpected", "is not a known field"))
    for key, check in checks.items():
        if key in value:
            problems += check(f"{prefix}{key}", value[key])
        elif key not in optional:
            problems.append(FieldProblem(f"{prefix}{key}", "missing", "is required"))
    return problems


def parse_body(body: bytes) -> Any:
    """The JSON value of `body`.

    Raises:
        RequestInvalid: the body is not UTF-8 JSON.
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        problem = FieldProblem("body", "invalid_json", f"is not valid JSON ({type(exc).__name__})")
        raise RequestInvalid([problem]) from None


def tenant_hint(raw: Any) -> str | None:
    """The tenant a parsed body names, if it names a valid one (the rate-limit key)."""
    tenant = raw.get("tenant_id") if isinstance(raw, dict) else None
    return tenant if isinstance(tenant, str) and SCOPE_ID.fullmatch(tenant) else None


def validate_task_request(raw: Any) -> TaskRequest:
    """The `TaskRequest` a parsed /execute body holds.

    Raises:
        RequestInvalid: every problem found, field by field.
    """
    checks = {name: check for name, (check, _) in FIELDS.items()}
    optional = frozenset(name for name, (_, can_omit) in FIELDS.items() if can_omit)
    problems = object_problems("", raw, checks, optional)
    if problems:
        raise RequestInvalid(problems)
    data = dict(raw)
    data["inputs"] = tuple(InputRef(**i) for i in data.get("inputs", ()))
    data["reusable_attempt_ids"] = tuple(data.get("reusable_attempt_ids", ()))
    retry = data.get("retry")
    data["retry"] = None if retry is None else RetryPolicy.from_dict(retry)
    if data.get("timeout_s") is not None:
        data["timeout_s"] = float(data["timeout_s"])
    return TaskRequest(**data)
