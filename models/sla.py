"""SLAs on work items: a target, an optional early warning, what happens on breach, and an
escalation ladder (the work-items spec, sections 3 and 4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BreachAction = Literal["notify", "escalate", "cancel", "open-remediation", "pause", "queue-human-approval"]
ACTIONS = (
    "notify: record it and send the webhook event; escalate: offer the item (a saga: the items it waits "
    "on) to another group; cancel: close or fail the item (a saga: compensate); open-remediation: open a "
    "remediation item for a person; pause: park the item in its waiting status; queue-human-approval: "
    "open an approval item."
)


def _escalate_needs(field: str, group: str) -> dict[str, Any]:
    """JSON Schema: when ``field`` is escalate, ``group`` is given (the validators' rule, for the OpenAPI)."""
    return {
        "anyOf": [
            {"properties": {field: {"not": {"const": "escalate"}}}},
            {"properties": {field: {"const": "escalate"}, group: {"type": "string"}}, "required": [field, group]},
        ]
    }


class EscalationStep(BaseModel):
    """One rung of an SLA's escalation ladder: the breach action taken this long after creation, and to whom."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_escalate_needs("action", "to"))

    after_ms: int = Field(ge=0, le=366 * 86_400_000, description="From the item's creation.")
    action: BreachAction = Field(description=f"What to do. {ACTIONS}")
    to: str | None = Field(
        default=None, min_length=1, max_length=200, description="For escalate: the group the item is offered to next."
    )

    @model_validator(mode="after")
    def _escalate_names_a_group(self) -> EscalationStep:
        if self.action == "escalate" and self.to is None:
            raise ValueError("an escalate step needs `to`: the group to offer the item to")
        return self


class SlaSpec(BaseModel):
    """An SLA: the target time, an optional early warning, the breach action, and an escalation ladder."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_escalate_needs("breach_action", "breach_to"))

    target_ms: int = Field(gt=0, le=366 * 86_400_000, description="Done within this long of creation.")
    warn_at_pct: int | None = Field(default=None, ge=1, le=99, description="Warn when this much of it has passed.")
    breach_action: BreachAction = Field(default="notify", description=f"What to do when the target passes. {ACTIONS}")
    breach_to: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="For breach_action escalate (and only needed then): the group the item is offered to next.",
    )
    escalation: list[EscalationStep] = Field(
        default_factory=list,
        max_length=20,
        description="Further steps after the breach, each at its after_ms; listed in order of after_ms.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SlaSpec:
        if self.breach_action == "escalate" and self.breach_to is None:
            raise ValueError("breach_action escalate needs breach_to: the group to offer the item to")
        offsets = [s.after_ms for s in self.escalation]
        if offsets != sorted(offsets):
            raise ValueError("escalation steps must be in order of after_ms")
        return self

    def groups(self) -> list[str]:
        """Every group this SLA may offer the item to."""
        named = [self.breach_to] if self.breach_action == "escalate" and self.breach_to else []
        return named + [s.to for s in self.escalation if s.action == "escalate" and s.to]


class StallSpec(BaseModel):
    """What to do when an item's holder keeps its lease alive but reports no progress: after
    ``after_ms`` without progress it is stalled and ``action`` runs; then the escalation steps,
    each this long after the last progress."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_escalate_needs("action", "to"))

    after_ms: int = Field(
        gt=0, le=366 * 86_400_000, description="How long without new progress counts as stalled (from the claim)."
    )
    action: BreachAction = Field(default="notify", description=f"What to do when it stalls. {ACTIONS}")
    to: str | None = Field(
        default=None, min_length=1, max_length=200, description="For action escalate: the group offered the item."
    )
    escalation: list[EscalationStep] = Field(
        default_factory=list,
        max_length=20,
        description="Further steps, each at its after_ms from the last progress, in order of after_ms.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> StallSpec:
        if self.action == "escalate" and self.to is None:
            raise ValueError("action escalate needs `to`: the group to offer the item to")
        offsets = [self.after_ms, *(s.after_ms for s in self.escalation)]
        if offsets != sorted(offsets):
            raise ValueError("escalation steps must be in order of after_ms")
        return self

    def rungs(self) -> list[EscalationStep]:
        """The whole ladder: the stall itself, then the escalation steps."""
        return [EscalationStep(after_ms=self.after_ms, action=self.action, to=self.to), *self.escalation]
