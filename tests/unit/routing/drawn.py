"""Agents and asks drawn at random for the routing checks' property tests: most agents have most of
what is asked, so that every check is reached often."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from models.agents import Candidate, RiskLevel
from orchestrator.routing.inputs import ItemFacts
from tests.unit.routing.fleet import agent, item

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
