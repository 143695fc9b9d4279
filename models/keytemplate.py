"""Key templates such as ``account:{input.account_id}``: placeholders resolved from a saga."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class KeyTemplateError(ValueError):
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
