"""How one agent is chosen among those that fit (work-items spec §4's selection strategies), each
a total order so that the same inputs always give the same agent. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from models.agents import Candidate, Proficiency
from models.routing import Strategy
from orchestrator.routing.checks import Needs, proficiency


def ranked(strategy: Strategy, fit: Sequence[Candidate], needs: Needs, cursor: str | None) -> list[Candidate]:
    """The fitting candidates, best first: the first is the one chosen."""
    if strategy == "priority":
        # The most proficient in what is asked; ties go by ref, so the choice is stable.
        return sorted(fit, key=lambda c: (-proficiency(needs, c), c.ref))
    if strategy == "capacity_aware":
        # The most free capacity relative to capacity: 3 of 4 free beats 5 of 20.
        return sorted(fit, key=lambda c: (-c.free / c.spec.capacity, -c.free, c.ref))
    if strategy == "cost_minimizing":
        return sorted(fit, key=lambda c: (c.spec.cost_per_item, -c.free, c.ref))
    # round_robin: in ref order, starting after the agent this rule chose last.
    by_ref = sorted(fit, key=lambda c: c.ref)
    start = next((i for i, c in enumerate(by_ref) if cursor is None or c.ref > cursor), 0)
    return by_ref[start:] + by_ref[:start]


def why_chosen(strategy: Strategy, chosen: Candidate, needs: Needs, cursor: str | None) -> str:
    """The strategy's reason for its choice, in words."""
    if strategy == "priority":
        level = proficiency(needs, chosen)
        if not level:
            return "first by ref (the rule asks for no capability to rank by)"
        return f"the most proficient ({Proficiency(level).name} in {', '.join(sorted(needs.capabilities))})"
    if strategy == "capacity_aware":
        return f"the most free capacity ({chosen.free} of {chosen.spec.capacity} free)"
    if strategy == "cost_minimizing":
        unit = chosen.spec.budget.unit if chosen.spec.budget else (needs.budget.currency if needs.budget else None)
        return f"the cheapest ({chosen.spec.cost_per_item:g}{f' {unit}' if unit else ''} per item)"
    return f"next in turn after {cursor}" if cursor else "first in turn"
