"""The work-items spec spells fields in camelCase (``costBudget``, ``riskLevel``); workyard's API
in snake_case. Models that take the spec's documents accept both, one at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def accept_spellings(spellings: dict[str, str]) -> Callable[[Any], Any]:
    """A before-validator: the spec's spelling of a field (``costBudget``) stands for ours
    (``cost_budget``); both at once is refused rather than one silently winning."""

    def rename(data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for theirs, ours in spellings.items():
            if theirs in out:
                if ours in out:
                    raise ValueError(f"give {ours} or {theirs}, not both")
                out[ours] = out.pop(theirs)
        return out

    return rename
