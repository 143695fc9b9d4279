"""How one agent is chosen among those that fit (work-items spec §4's selection strategies), each
a total order so that the same inputs always give the same agent. Pure.

Each strategy is a sort key (:func:`key_of`); the agent with the least key is chosen. Each also
has a *bound* (:func:`bound_of`): the least key an agent could have whatever its state (load),
from its spec alone. A decision over a large pool reads the agents' state in the order of their
bounds and stops once the best fitting agent read has a key no unread agent's bound can beat
(``engine.evaluate``): the agent chosen is the one a read of every agent would choose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from models.agents import AgentSpec, Candidate, Proficiency
from models.routing import Strategy
from orchestrator.routing.checks import Needs, proficiency, ranks_of

Key = tuple[Any, ...]


def key_of(strategy: Strategy, needs: Needs, cursor: str | None) -> Callable[[Candidate], Key]:
    """The strategy's order as a sort key over fitting candidates: the least is chosen."""
    if strategy == "priority":
        # The most proficient in what is asked; ties go by ref, so the choice is stable.
        return lambda c: (-proficiency(needs, c), c.ref)
    if strategy == "capacity_aware":
        # The most free capacity relative to capacity: 3 of 4 free beats 5 of 20.
        return lambda c: (-c.free / c.spec.capacity, -c.free, c.ref)
    if strategy == "cost_minimizing":
        return lambda c: (c.spec.cost_per_item, -c.free, c.ref)
    # round_robin: in ref order, starting after the agent this rule chose last.
    return lambda c: (cursor is not None and c.ref <= cursor, c.ref)


def bound_of(strategy: Strategy, needs: Needs, cursor: str | None) -> Callable[[str, AgentSpec], Key]:
    """The least key (:func:`key_of`) an agent with this ref and spec could have, whatever its
    load: its key as if it had all its capacity free."""
    if strategy == "priority":
        asked = tuple(needs.capabilities)

        def weakest(ref: str, spec: AgentSpec) -> Key:
            ranks = ranks_of(spec)
            return (-min((ranks.get(name, 0) for name in asked), default=0), ref)

        return weakest
    if strategy == "capacity_aware":
        return lambda ref, spec: (-1.0, -spec.capacity, ref)
    if strategy == "cost_minimizing":
        return lambda ref, spec: (spec.cost_per_item, -spec.capacity, ref)
    return lambda ref, spec: (cursor is not None and ref <= cursor, ref)


def ranked(strategy: Strategy, fit: Sequence[Candidate], needs: Needs, cursor: str | None) -> list[Candidate]:
    """The fitting candidates, best first: the first is the one chosen."""
    return sorted(fit, key=key_of(strategy, needs, cursor))


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
