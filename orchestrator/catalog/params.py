"""Typed template parameters: each value given at instantiation is checked against its
:class:`ParamSpec` and put in a canonical form (dates and datetimes as ISO 8601 text), defaults
filled in, unknown names refused. Every problem names its field, ``parameters.<name>``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from models.item_templates import ParamSpec
from orchestrator.errors import InvalidInput


class ParamProblem(ValueError):
    """A value that does not meet its parameter's type."""


def bind(specs: Mapping[str, ParamSpec], given: Mapping[str, Any], *, where: str = "parameters") -> dict[str, Any]:
    """The parameters' values for an instantiation: ``given`` checked, defaults filled in. Raises
    :class:`InvalidInput` listing every wrong, missing or unknown parameter."""
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for name in sorted(set(given) - set(specs)):
        known = ", ".join(sorted(specs)) or "none"
        problems.append({"path": f"{where}.{name}", "message": f"not a parameter of this template (known: {known})"})
    for name, spec in specs.items():
        if name in given and given[name] is not None:
            try:
                values[name] = canonical(spec, given[name])
            except ParamProblem as exc:
                problems.append({"path": f"{where}.{name}", "message": str(exc)})
        elif spec.default is not None:
            values[name] = canonical(spec, spec.default)
        elif spec.required:
            problems.append({"path": f"{where}.{name}", "message": f"required ({spec.type})"})
    if problems:
        raise InvalidInput(
            "the template's parameters are wrong: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems),
            details=problems,
        )
    return values


def canonical(spec: ParamSpec, value: Any) -> Any:
    """``value`` as ``spec``'s type keeps it, or :class:`ParamProblem`."""
    kind = spec.type
    if kind == "string":
        if not isinstance(value, str):
            raise ParamProblem("must be a string")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamProblem("must be an integer")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamProblem("must be a finite number")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ParamProblem("must be true or false")
        return value
    if kind == "date":
        return _date(value).isoformat()
    if kind == "datetime":
        return _datetime(value, "must be").isoformat()
    if kind == "timespan":
        if not isinstance(value, Mapping) or set(value) != {"start", "end"}:
            raise ParamProblem('must be {"start": <datetime>, "end": <datetime>}')
        start, end = _datetime(value["start"], "start must be"), _datetime(value["end"], "end must be")
        if end <= start:
            raise ParamProblem("end must come after start")
        return {"start": start.isoformat(), "end": end.isoformat()}
    if kind == "enum":
        if value not in (spec.values or []):
            raise ParamProblem(f"must be one of {', '.join(spec.values or [])}")
        return value
    if kind == "object":
        if not isinstance(value, Mapping):
            raise ParamProblem("must be an object")
        return dict(value)
    if not isinstance(value, list):  # array
        raise ParamProblem("must be an array")
    return value


def check_spec(name: str, spec: ParamSpec) -> list[dict[str, str]]:
    """Problems with a parameter's own declaration: a default or example its type refuses."""
    problems = []
    for field in ("default", "example"):
        value = getattr(spec, field)
        if value is None:
            continue
        try:
            canonical(spec, value)
        except ParamProblem as exc:
            problems.append({"path": f"parameters.{name}.{field}", "message": str(exc)})
    return problems


def sample(spec: ParamSpec) -> tuple[Any, bool]:
    """A value to render a blueprint with at registration, and whether the template gave it (a
    default or an example) rather than it being made up from the type alone."""
    for given in (spec.default, spec.example):
        if given is not None:
            return canonical(spec, given), True
    made: dict[str, Any] = {
        "string": "example",
        "integer": 1,
        "number": 1.0,
        "boolean": True,
        "date": "2026-01-01",
        "datetime": "2026-01-01T00:00:00+00:00",
        "timespan": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T01:00:00+00:00"},
        "enum": (spec.values or ["example"])[0],
        "object": {},
        "array": [],
    }
    return made[spec.type], False


def _date(value: Any) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ParamProblem("must be a date, YYYY-MM-DD")


def _datetime(value: Any, lead: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise ParamProblem(f"{lead} an ISO 8601 datetime with a time zone")
