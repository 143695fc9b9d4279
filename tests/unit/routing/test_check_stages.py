"""The router runs ``failing_stage`` (the checks' conditions without words) for every candidate,
and the worded checks only for the verdicts a decision lists: both must reject the same agents
at the same check, whatever is asked and whoever is asked."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from models.agents import Candidate, RiskLevel
from orchestrator.routing.checks import WORDED, failing_stage, needs_of
from orchestrator.routing.inputs import ItemFacts
from tests.unit.routing.fleet import agent, item, rule

NAMES = ("sql", "python", "ocr")
LEVELS = ("novice", "intermediate", "advanced", "expert")
REGIONS = ("KE", "EU", "US")
# What is asked: a few names. What an agent has: most of them, so that many get past the early
# checks and every later one is reached often.
few = st.lists(st.sampled_from(NAMES), max_size=2, unique=True)
most = st.lists(st.sampled_from(NAMES), min_size=2, max_size=3, unique=True)
# Where an empty list means "no limit": sometimes empty.
limits: st.SearchStrategy[list[str]] = st.one_of(st.just([]), most)


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    spec: dict[str, Any] = {
        "roles": draw(most),
        "groups": draw(most),
        "capacity": draw(st.integers(1, 3)),
        "autonomy": draw(st.sampled_from(("L0", "L1", "L2", "L3", "L4", "L4", "L4"))),
        "cost_per_item": draw(st.sampled_from((0.0, 1.0, 5.0, 20.0))),
        "data_boundary": {
            "regions": draw(st.lists(st.sampled_from(REGIONS), max_size=2, unique=True)),
            "datasets": draw(limits),
        },
        "safety": {"allowed_actions": draw(limits), "prohibited_actions": draw(few)},
    }
    if draw(st.booleans()):
        spec["budget"] = {
            "unit": draw(st.sampled_from(("USD", "EUR"))),
            "limit": draw(st.sampled_from((1, 10, 100))),
            "period": "day",
            "on_exhausted": draw(st.sampled_from(("block", "notify", "queue_for_human"))),
        }
    return agent(
        "a",
        caps={name: draw(st.sampled_from((*LEVELS, "expert", "expert"))) for name in draw(most)},
        load=draw(st.integers(0, 3)),
        liveness=draw(st.sampled_from(("live", "stale", "dead"))),
        spent=draw(st.sampled_from((0.0, 1.0, 10.0, 50.0))),  # 1 and 10: a budget spent to the last unit
        **spec,
    )


@st.composite
def asks(draw: st.DrawFn) -> tuple[dict[str, Any], ItemFacts]:
    selectors: list[dict[str, Any]] = []
    for name in draw(few):
        kind = draw(st.sampled_from(("capability", "skill", "role", "group")))
        selector: dict[str, Any] = {"kind": kind, "value": name}
        if kind == "skill":
            selector["min_proficiency"] = draw(st.sampled_from(LEVELS))
        selectors.append(selector)
    if draw(st.booleans()):
        selectors.append({"kind": "agent_type", "value": draw(st.sampled_from(("stateless_tool_caller", "actuator")))})
    body: dict[str, Any] = {"selectors": selectors}
    if draw(st.booleans()):
        body["cost_budget"] = {
            "currency": draw(st.sampled_from(("USD", "EUR"))),
            "limit": draw(st.sampled_from((2, 10))),
        }
    if draw(st.booleans()):
        body["data_residency"] = {"allowed_regions": draw(st.lists(st.sampled_from(REGIONS), min_size=1, unique=True))}
    if draw(st.booleans()):
        body["hitl"] = {"required": True}
    facts = item(
        risk=draw(st.sampled_from((*RiskLevel, RiskLevel.low, RiskLevel.low))),
        capabilities=tuple(draw(few)),
        actions=frozenset(draw(few)),
        datasets=frozenset(draw(few)),
        hitl=draw(st.booleans()),
    )
    return body, facts


@settings(max_examples=2000, deadline=None)
@given(asks(), candidates())
def test_the_fast_checks_reject_at_the_same_check_as_the_worded_ones(
    ask: tuple[dict[str, Any], ItemFacts], c: Candidate
) -> None:
    body, facts = ask
    needs = needs_of(rule(**body).spec, facts)
    worded = next((stage for stage, check in enumerate(WORDED) if check(needs, c) is not None), None)
    assert failing_stage(needs, c) == worded
    event(f"stage {worded}")  # `pytest --hypothesis-show-statistics`: every check is reached
