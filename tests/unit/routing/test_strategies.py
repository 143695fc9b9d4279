"""The four strategies over one seeded fleet: who is chosen, and the order of the rest."""

from __future__ import annotations

import pytest

from orchestrator.routing.engine import evaluate
from tests.unit.routing.fleet import agent, item, rule

SQL = [{"kind": "capability", "value": "sql"}]
# Five agents that all do sql; "slow" is stale and "busy" full, so three fit.
FLEET = [
    agent("ann", caps={"sql": "intermediate"}, capacity=4, load=1, cost_per_item=2.0),
    agent("bob", caps={"sql": "expert"}, capacity=10, load=8, cost_per_item=5.0),
    agent("cyd", caps={"sql": "advanced"}, capacity=2, load=0, cost_per_item=2.0),
    agent("slow", caps={"sql": "expert"}, capacity=9, liveness="stale", cost_per_item=0.1),
    agent("busy", caps={"sql": "expert"}, capacity=1, load=1, cost_per_item=0.1),
]

# strategy -> the fitting agents, chosen first
TABLE = {
    # Proficiency: expert, advanced, intermediate.
    "priority": ["agent:bob", "agent:cyd", "agent:ann"],
    # Free share: cyd 2/2, ann 3/4, bob 2/10.
    "capacity_aware": ["agent:cyd", "agent:ann", "agent:bob"],
    # Cost 2, 2, 5; between ann and cyd (both 2) the one with more free capacity (ann: 3 free).
    "cost_minimizing": ["agent:ann", "agent:cyd", "agent:bob"],
    # No cursor yet: ref order.
    "round_robin": ["agent:ann", "agent:bob", "agent:cyd"],
}


@pytest.mark.parametrize("strategy", sorted(TABLE))
def test_each_strategy_over_the_fleet(strategy: str) -> None:
    evaluation = evaluate(rule(strategy=strategy, selectors=SQL), item(), FLEET)
    fitting = [o.ref for o in evaluation.outcomes if o.verdict in ("chosen", "eligible")]
    assert fitting == TABLE[strategy]
    assert evaluation.chosen is not None and evaluation.chosen.ref == TABLE[strategy][0]
    assert {o.ref: o.check for o in evaluation.outcomes if o.verdict == "rejected"} == {
        "agent:slow": "liveness",
        "agent:busy": "capacity",
    }


def test_strategies_give_different_choices_on_the_same_fleet() -> None:
    # Were they the same, the table above would not tell the strategies apart.
    assert len({order[0] for order in TABLE.values()}) == 3


def test_priority_without_capabilities_to_rank_by_goes_by_ref() -> None:
    evaluation = evaluate(rule(strategy="priority"), item(), [agent("zed"), agent("abe")])
    assert evaluation.chosen is not None and evaluation.chosen.ref == "agent:abe"
    assert "first by ref" in evaluation.why


def test_priority_ranks_by_the_weakest_required_capability() -> None:
    both = [{"kind": "capability", "value": "sql"}, {"kind": "capability", "value": "python"}]
    fleet = [
        agent("uneven", caps={"sql": "expert", "python": "novice"}),
        agent("steady", caps={"sql": "advanced", "python": "advanced"}),
    ]
    evaluation = evaluate(rule(selectors=both), item(), fleet)
    assert evaluation.chosen is not None and evaluation.chosen.ref == "agent:steady"


def test_round_robin_takes_turns_and_wraps() -> None:
    rr = rule(strategy="round_robin", selectors=SQL)
    cursor: str | None = None
    chosen = []
    for _ in range(5):
        evaluation = evaluate(rr, item(), FLEET, cursor=cursor)
        assert evaluation.chosen is not None
        cursor = evaluation.chosen.ref
        chosen.append(cursor)
    assert chosen == ["agent:ann", "agent:bob", "agent:cyd", "agent:ann", "agent:bob"]


def test_round_robin_goes_on_after_an_agent_that_left() -> None:
    # The cursor names an agent no longer fitting (or registered): the next in ref order follows it.
    evaluation = evaluate(rule(strategy="round_robin", selectors=SQL), item(), FLEET, cursor="agent:bz")
    assert evaluation.chosen is not None and evaluation.chosen.ref == "agent:cyd"
    assert "next in turn after agent:bz" in evaluation.why


def test_cost_minimizing_says_what_the_choice_costs() -> None:
    evaluation = evaluate(rule(strategy="cost_minimizing", selectors=SQL), item(), FLEET)
    assert "the cheapest (2 per item)" in evaluation.why
    priced = rule(strategy="cost_minimizing", cost_budget={"currency": "USD", "limit": 10})
    assert "(2 USD per item)" in evaluate(priced, item(), FLEET[:1]).why
