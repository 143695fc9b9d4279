"""The rule's model: the spec's own example (camelCase) is a valid rule, and what is wrong is
refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from models.routing import RoutingRuleCreate
from orchestrator.routing.decisions import MAX_LISTED, listing
from orchestrator.routing.engine import CandidateOutcome

# Section 4's example, as the spec writes it.
SPEC_EXAMPLE: dict[str, Any] = {
    "id": "route-001",
    "match": {"labels": ["db", "urgent"], "type": ["remediation", "change"]},
    "selectors": [{"kind": "skill", "value": "postgres-admin"}, {"kind": "role", "value": "oncall"}],
    "costBudget": {"currency": "USD", "limit": 1000},
    "dataResidency": {"allowedRegions": ["KE", "UG"]},
    "escalation": {
        "onTimeoutMs": 3600000,
        "steps": [
            {"afterMs": 0, "action": "notify", "to": ["assignee"]},
            {"afterMs": 1800000, "action": "escalate", "to": ["team_lead"]},
            {"afterMs": 3600000, "action": "escalate", "to": ["agency_lead"]},
        ],
    },
    "hitl": {"required": True, "gates": ["privacy_review", "security_review"]},
}


def test_the_specs_example_is_a_rule() -> None:
    rule = RoutingRuleCreate.model_validate(SPEC_EXAMPLE)
    assert rule.match.types == ["remediation", "change"] and rule.match.labels == ["db", "urgent"]
    assert rule.cost_budget is not None and rule.cost_budget.limit == 1000
    assert rule.data_residency is not None and rule.data_residency.allowed_regions == ["KE", "UG"]
    assert rule.escalation is not None and rule.escalation.on_timeout_ms == 3600000
    assert [s.after_ms for s in rule.escalation.steps] == [0, 1800000, 3600000]
    assert rule.escalation.groups() == ["team_lead", "agency_lead"]
    assert rule.hitl is not None and rule.hitl.gates == ["privacy_review", "security_review"]
    # Our spelling says the same.
    ours = RoutingRuleCreate.model_validate(rule.model_dump())
    assert ours == rule


def _problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        RoutingRuleCreate.model_validate(body)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"costBudget": {"currency": "USD", "limit": 1}, "cost_budget": None}, "", "cost_budget or costBudget"),
        ({"match": {"type": ["a"], "types": ["b"]}}, "match", "types or type"),
        ({"match": {"priority": {"min": 80, "max": 20}}}, "match.priority", "must not exceed"),
        ({"selectors": [{"kind": "wizard", "value": "x"}]}, "selectors.0", "kind"),
        (
            {"selectors": [{"kind": "role", "value": "x", "min_proficiency": "expert"}]},
            "selectors.0.role.min_proficiency",
            "Extra",
        ),
        ({"selectors": [{"kind": "agent_type", "value": "robot"}]}, "selectors.0.agent_type.value", "Input"),
        ({"strategy": "random"}, "strategy", "Input should be"),
        ({"cost_budget": {"currency": "USD", "limit": 0}}, "cost_budget.limit", "greater than 0"),
        ({"data_residency": {"allowed_regions": []}}, "data_residency.allowed_regions", "at least 1"),
        (
            {"escalation": {"on_timeout_ms": 1, "steps": [{"after_ms": 0, "action": "escalate", "to": ["a", "b"]}]}},
            "escalation.steps.0",
            "exactly one group",
        ),
        ({"escalation": {"steps": []}}, "escalation.on_timeout_ms", "Field required"),
        ({"reroute_on": ["created"]}, "reroute_on.0", "Input should be"),
        ({"id": "has space"}, "id", "pattern"),
    ],
)
def test_what_is_wrong_is_named(body: dict[str, Any], path: str, words: str) -> None:
    problems = _problems({"id": "r1", **body})
    assert any(p == path and words in m for p, m in problems), problems


def test_escalation_steps_climb_in_time_order_however_written() -> None:
    rule = RoutingRuleCreate.model_validate(
        {
            "id": "r1",
            "escalation": {
                "on_timeout_ms": 10,
                "steps": [{"after_ms": 9, "action": "notify"}, {"after_ms": 1, "action": "escalate", "to": "leads"}],
            },
        }
    )
    assert rule.escalation is not None
    assert [(s.after_ms, s.to) for s in rule.escalation.steps] == [(1, ["leads"]), (9, None)]


def test_a_decision_lists_the_first_verdicts_and_counts_the_rest() -> None:
    outcomes = [CandidateOutcome(f"agent:{n:04}", "rejected", "capabilities", "lacks capability x") for n in range(250)]
    outcomes[0] = CandidateOutcome("agent:best", "chosen", None, "the cheapest")
    listed, omitted = listing(outcomes)
    assert len(listed) == MAX_LISTED and listed[0]["verdict"] == "chosen"
    assert omitted == {"capabilities": 250 - MAX_LISTED}
    assert listing(outcomes[:5]) == ([_as_dict(o) for o in outcomes[:5]], {})
    # Agents a source never read (lacking a capability) are counted with the capability rejections.
    assert listing(outcomes[:5], left_out=7) == ([_as_dict(o) for o in outcomes[:5]], {"capabilities": 7})


def _as_dict(o: CandidateOutcome) -> dict[str, Any]:
    return {"ref": o.ref, "verdict": o.verdict, "check": o.check, "why": o.why}
