"""Agents and rules for the routing engine's unit tests, built in one line each."""

from __future__ import annotations

from typing import Any

from models.agents import AgentSpec, Candidate, Liveness
from models.routing import RoutingRuleSpec
from orchestrator.routing.inputs import ItemFacts, LiveRule


def agent(
    name: str,
    *,
    caps: dict[str, str] | None = None,
    load: int = 0,
    liveness: Liveness = "live",
    spent: float = 0.0,
    tenant: str = "acme",
    **spec: Any,
) -> Candidate:
    """``agent("a1", caps={"sql": "expert"}, capacity=4, autonomy="L3")``: a live, idle agent."""
    capabilities = [{"name": n, "proficiency": p} for n, p in (caps or {}).items()]
    body = {"agent_type": "stateless_tool_caller", "capabilities": capabilities, **spec}
    return Candidate(f"agent:{name}", tenant, AgentSpec.model_validate(body), load, liveness, spent)


def rule(rule_id: str = "r1", *, tenant: str = "acme", version: int = 1, **body: Any) -> LiveRule:
    return LiveRule(tenant, version, RoutingRuleSpec.model_validate({"id": rule_id, **body}))


def item(**facts: Any) -> ItemFacts:
    base: dict[str, Any] = {
        "id": "WI-1",
        "tenant": "acme",
        "type": "task",
        "labels": frozenset(),
        "priority": 50,
    }
    base.update(facts)
    if isinstance(base["labels"], (list, set, tuple)):
        base["labels"] = frozenset(base["labels"])
    return ItemFacts(**base)


def no_cursor(_: LiveRule) -> str | None:
    return None
