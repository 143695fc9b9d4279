"""Key templates such as ``account:{input.account_id}``: placeholders resolved from a saga."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from models.errors import WorkyardError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class KeyTemplateError(WorkyardError, ValueError):
    """A placeholder names a value the saga does not have."""


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill every ``{dotted.path}`` from ``values``; a missing or non-scalar value is an error."""

    def lookup(match: re.Match[str]) -> str:
        path = match.group(1)
        current: Any = values
        for part in path.split("."):
            if not isinstance(current, Mapping) or part not in current:
                raise KeyTemplateError(f"{template!r}: {{{path}}} is not in the saga")
            current = current[part]
        if isinstance(current, (dict, list)) or current is None:
            raise KeyTemplateError(f"{template!r}: {{{path}}} must be a string or a number")
        return str(current)

    return _PLACEHOLDER.sub(lookup, template)


def render_value(value: Any, values: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists walked). A string that is exactly
    one placeholder takes the value itself, so ``"{results.quote}"`` can carry a whole object."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole is not None:
            current: Any = values
            for part in whole.group(1).split("."):
                if not isinstance(current, Mapping) or part not in current:
                    raise KeyTemplateError(f"{value!r}: {{{whole.group(1)}}} is not in the saga")
                current = current[part]
            return current
        return render(value, values) if placeholders(value) else value
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    return value


def all_placeholders(value: Any) -> list[str]:
    """Every placeholder in every string inside ``value``."""
    if isinstance(value, str):
        return placeholders(value)
    if isinstance(value, dict):
        return [p for v in value.values() for p in all_placeholders(v)]
    if isinstance(value, list):
        return [p for v in value for p in all_placeholders(v)]
    return []
