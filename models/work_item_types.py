"""The built-in work-item types: the work-items spec's six core types, plus the next-work doc's
epic and subtask. Each has a JSON Schema for the item as submitted (title, description, payload,
metadata, ...) and the lifecycle its items follow unless their origin picks another.

Type-specific fields (an investigation's scope, a change's rollback plan) live in ``payload``;
the schemas require the ones the spec lists as required for the type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.agents import RiskLevel
from models.hitl import Hitl


@dataclass(frozen=True)
class WorkItemType:
    """A work-item type: the JSON Schema its items must satisfy, the lifecycle they follow, what an
    agent needs to be given one (capabilities, and autonomy enough for its risk level), and what
    gates its items (a policy, a human in the loop)."""

    name: str
    description: str
    schema: dict[str, Any]
    lifecycle: str
    builtin: bool = True
    capabilities: tuple[str, ...] = ()
    risk_level: RiskLevel = RiskLevel.low
    # Change control for every item of the type (spec §7): the policy that gates them, and a
    # person's approval of their completion.
    approval_policy_id: str | None = None
    hitl: Hitl | None = None


RISK_ORDER: tuple[RiskLevel, ...] = tuple(RiskLevel)  # low to critical


def effective_risk(item_type: WorkItemType | None, own: str | None) -> RiskLevel:
    """An item's risk level: its own where that raises its type's, else its type's."""
    levels = [item_type.risk_level if item_type is not None else RiskLevel.low]
    if own is not None:
        levels.append(RiskLevel(own))
    return max(levels, key=RISK_ORDER.index)


def required_capabilities(item_type: WorkItemType | None, offered_capability: str | None) -> list[str]:
    """What an agent needs to be given an item: its type's capabilities, and the one its agent
    offer names (each once, in that order)."""
    names = list(item_type.capabilities) if item_type is not None else []
    if offered_capability is not None:
        names.append(offered_capability)
    return list(dict.fromkeys(names))


def _schema(payload_required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": "object"}
    if payload_required:
        payload["required"] = payload_required
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["title"] + (["payload"] if payload_required else []),
        "properties": {"title": {"type": "string", "minLength": 1}, "payload": payload},
    }
    schema.update(extra)
    return schema


# Risk levels (spec §12.1: an item's risk sets the least autonomy an agent needs to be given it):
# a change alters systems under change control (high); a remediation acts on a system that already
# misbehaves, and a job or an experiment runs against real systems with little watching (medium);
# tasks, epics, subtasks and investigations are ordinary work and analysis (low). Capabilities are
# a deployment's own names, so the built-in types require none.
BUILTIN_TYPES: dict[str, WorkItemType] = {
    t.name: t
    for t in (
        WorkItemType(
            "task",
            "A single, short-running unit of work done by an agent or a person.",
            # The spec: "payload or description".
            _schema(
                anyOf=[
                    {"required": ["payload"], "properties": {"payload": {"minProperties": 1}}},
                    {"required": ["description"], "properties": {"description": {"minLength": 1}}},
                ]
            ),
            "work",
        ),
        WorkItemType(
            "subtask",
            "A piece of a task (next-work rule 1 serves these first).",
            _schema(),
            "work",
        ),
        WorkItemType("epic", "A body of work made of tasks.", _schema(), "work"),
        WorkItemType(
            "job",
            "A collection of tasks or a long-running process (batch or pipeline).",
            {
                **_schema(),
                "required": ["title", "payload"],
                "properties": {
                    "title": {"type": "string", "minLength": 1},
                    # tasks[] or a workflow spec, and a schedule or a trigger.
                    "payload": {
                        "type": "object",
                        "allOf": [
                            {"anyOf": [{"required": ["tasks"]}, {"required": ["workflow"]}]},
                            {"anyOf": [{"required": ["schedule"]}, {"required": ["trigger"]}]},
                        ],
                    },
                },
            },
            "canonical",
            risk_level=RiskLevel.medium,
        ),
        WorkItemType(
            "investigation",
            "Exploratory analysis, usually led by a person, with evidence captured.",
            _schema(["scope", "successCriteria", "evidenceRequirements"]),
            "canonical",
        ),
        WorkItemType(
            "change",
            "A planned change to systems, under change control.",
            _schema(["changeWindow", "approvalPolicyId", "rollbackPlan"]),
            "canonical",
            risk_level=RiskLevel.high,
        ),
        WorkItemType(
            "remediation",
            "Corrective action after an incident or a failed validation.",
            _schema(["incidentRef", "startAt", "remediationPlan"]),
            "canonical",
            risk_level=RiskLevel.medium,
        ),
        WorkItemType(
            "experiment",
            "A controlled test with measured metrics and a rollback plan.",
            _schema(["hypothesis", "metrics", "successCriteria", "rollbackPlan"]),
            "canonical",
            risk_level=RiskLevel.medium,
        ),
    )
}

BUILTIN_TYPES["change"].schema["properties"]["payload"]["properties"] = {
    "changeWindow": {
        "type": "object",
        "required": ["start", "end"],
        "properties": {"start": {"type": "string"}, "end": {"type": "string"}},
    }
}

# The hierarchy of the next-work doc: epic -> task -> subtask. A subtask needs a task above it.
PARENT_TYPES: dict[str, frozenset[str]] = {
    "epic": frozenset(),
    "task": frozenset({"epic"}),
    "subtask": frozenset({"task"}),
}
PARENT_REQUIRED = frozenset({"subtask"})
