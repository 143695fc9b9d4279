"""Each of §12.1's checks rejects an agent with its name and a reason in words; an agent that
fails several is rejected by the first, in the spec's order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from models.agents import Candidate, RiskLevel
from orchestrator.routing.checks import CHECKS
from orchestrator.routing.engine import evaluate
from orchestrator.routing.inputs import ItemFacts
from tests.unit.routing.fleet import agent, item, rule

# (what is asked, the agent, the check it fails, words its reason contains)
CASES: list[tuple[str, dict[str, Any], ItemFacts, Candidate, str, str]] = [
    (
        "missing capability",
        {"selectors": [{"kind": "capability", "value": "sql"}]},
        item(),
        agent("a", caps={"python": "expert"}),
        "capabilities",
        "lacks capability sql",
    ),
    (
        "skill below the least proficiency",
        {"selectors": [{"kind": "skill", "value": "sql", "min_proficiency": "advanced"}]},
        item(),
        agent("a", caps={"sql": "intermediate"}),
        "capabilities",
        "does sql at intermediate; the rule needs advanced",
    ),
    (
        "the item's own capability (its agent offer)",
        {},
        item(capabilities=("translate",)),
        agent("a", caps={"sql": "expert"}),
        "capabilities",
        "lacks capability translate",
    ),
    (
        "role",
        {"selectors": [{"kind": "role", "value": "oncall"}]},
        item(),
        agent("a", roles=["dev"]),
        "capabilities",
        "does not fill role oncall",
    ),
    (
        "group",
        {"selectors": [{"kind": "group", "value": "dbas"}]},
        item(),
        agent("a", groups=["devs"]),
        "capabilities",
        "is not in group dbas",
    ),
    (
        "agent type",
        {"selectors": [{"kind": "agent_type", "value": "actuator"}]},
        item(),
        agent("a"),
        "capabilities",
        "is a stateless_tool_caller agent, not actuator",
    ),
    (
        "autonomy below the risk's",
        {},
        item(risk=RiskLevel.high),
        agent("a", autonomy="L2"),
        "autonomy",
        "autonomy L2 is below L3, which a high-risk item needs",
    ),
    (
        "autonomy below what a human in the loop needs",
        {"hitl": {"required": True, "gates": ["privacy_review"]}},
        item(),
        agent("a", autonomy="L1"),
        "autonomy",
        "below L2, which an item with a human in the loop needs",
    ),
    (
        "cost over the rule's budget",
        {"cost_budget": {"currency": "USD", "limit": 10}},
        item(),
        agent("a", cost_per_item=12),
        "budget",
        "costs 12 USD per item, over the rule's limit of 10",
    ),
    (
        "costs counted in another unit",
        {"cost_budget": {"currency": "USD", "limit": 10}},
        item(),
        agent("a", cost_per_item=1, budget={"unit": "tokens", "limit": 1000}),
        "budget",
        "counts its costs in tokens; the rule's budget is in USD",
    ),
    (
        "its own budget nearly spent",
        {},
        item(),
        agent("a", cost_per_item=5, budget={"unit": "USD", "limit": 100, "period": "day"}, spent=97),
        "budget",
        "has 3 USD left of its day's budget; an item costs 5",
    ),
    (
        "no data regions declared under a residency rule",
        {"data_residency": {"allowed_regions": ["KE", "UG"]}},
        item(),
        agent("a"),
        "data_boundary",
        "declares no data regions; the rule allows only KE, UG",
    ),
    (
        "a data region outside the allowed ones",
        {"data_residency": {"allowed_regions": ["KE", "UG"]}},
        item(),
        agent("a", data_boundary={"regions": ["KE", "EU"]}),
        "data_boundary",
        "may keep data in EU, outside KE, UG",
    ),
    (
        "a dataset the item touches",
        {},
        item(datasets=frozenset({"patients"})),
        agent("a", data_boundary={"datasets": ["billing"]}),
        "data_boundary",
        "may not touch dataset patients",
    ),
    (
        "a prohibited action (the item's)",
        {},
        item(actions=frozenset({"delete_db"})),
        agent("a", safety={"prohibited_actions": ["delete_db"]}),
        "safety",
        "is prohibited from delete_db",
    ),
    (
        "an action not among the allowed (the rule's)",
        {"actions": ["restart"]},
        item(),
        agent("a", safety={"allowed_actions": ["read"]}),
        "safety",
        "is not allowed to restart",
    ),
    ("capacity", {}, item(), agent("a", capacity=2, load=2), "capacity", "is at capacity: holds 2 of 2"),
    ("liveness", {}, item(), agent("a", liveness="stale"), "liveness", "is stale"),
]


@pytest.mark.parametrize(
    ("asked", "facts", "candidate", "check", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_check_rejects_with_its_reason(
    asked: dict[str, Any], facts: ItemFacts, candidate: Candidate, check: str, words: str
) -> None:
    evaluation = evaluate(rule(**asked), facts, [candidate])
    assert evaluation.chosen is None
    [outcome] = evaluation.outcomes
    assert (outcome.verdict, outcome.check) == ("rejected", check)
    assert words in outcome.why


@pytest.mark.parametrize(
    ("asked", "facts", "candidate", "check", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_without_the_requirement_the_same_agent_fits(
    asked: dict[str, Any], facts: ItemFacts, candidate: Candidate, check: str, words: str
) -> None:
    # The control: each case fails only for what it asks; the same agent, idle, live and with its
    # budget unspent, fits an item and a rule that ask nothing.
    candidate = replace(candidate, load=0, liveness="live", spent=0.0)
    plain = item(id=facts.id)
    assert evaluate(rule(), plain, [candidate]).chosen == candidate


def test_an_agent_failing_several_checks_is_rejected_by_the_first_in_order() -> None:
    tired = agent("a", caps={"python": "novice"}, autonomy="L0", capacity=1, load=1, liveness="dead")
    facts = item(risk=RiskLevel.critical)
    [outcome] = evaluate(rule(selectors=[{"kind": "capability", "value": "sql"}]), facts, [tired]).outcomes
    assert outcome.check == "capabilities"
    [outcome] = evaluate(rule(), facts, [tired]).outcomes
    assert outcome.check == "autonomy"
    [outcome] = evaluate(rule(), item(), [agent("a", capacity=1, load=1, liveness="dead")]).outcomes
    assert outcome.check == "capacity"
    assert CHECKS == ("capabilities", "autonomy", "budget", "data_boundary", "safety", "capacity", "liveness")


def test_a_budget_that_only_notifies_does_not_keep_an_agent_out() -> None:
    spent = agent("a", cost_per_item=5, budget={"unit": "USD", "limit": 10, "on_exhausted": "notify"}, spent=10)
    assert evaluate(rule(), item(), [spent]).chosen == spent


def test_an_agent_without_a_budget_states_its_cost_in_the_rules_currency() -> None:
    cheap = agent("a", cost_per_item=3)
    assert evaluate(rule(cost_budget={"currency": "EUR", "limit": 3}), item(), [cheap]).chosen == cheap


def test_regions_within_the_allowed_ones_fit() -> None:
    local = agent("a", data_boundary={"regions": ["KE"]})
    assert evaluate(rule(data_residency={"allowed_regions": ["KE", "UG"]}), item(), [local]).chosen == local


def test_the_holders_load_does_not_count_the_item_it_holds() -> None:
    # agent a holds this very item: at capacity 1, keeping it adds nothing.
    holder = agent("a", capacity=1, load=1)
    assert evaluate(rule(), item(holder="agent:a"), [holder]).chosen is not None
    assert evaluate(rule(), item(holder="agent:b"), [holder]).chosen is None


def test_every_candidate_gets_a_verdict_best_first() -> None:
    fleet = [
        agent("dead", caps={"sql": "expert"}, liveness="dead"),
        agent("nosql", caps={"python": "expert"}),
        agent("fit2", caps={"sql": "novice"}),
        agent("fit1", caps={"sql": "expert"}),
    ]
    evaluation = evaluate(rule(selectors=[{"kind": "capability", "value": "sql"}]), item(), fleet, exclude=frozenset())
    assert [(o.ref, o.verdict, o.check) for o in evaluation.outcomes] == [
        ("agent:fit1", "chosen", None),
        ("agent:fit2", "eligible", None),
        ("agent:dead", "rejected", "liveness"),  # got furthest: listed before the capability rejects
        ("agent:nosql", "rejected", "capabilities"),
    ]
