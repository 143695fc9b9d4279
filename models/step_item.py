"""A saga step that waits for a person or an agent: the work item the orchestrator creates when
the saga reaches the step. Strings may hold placeholders (``{input.order_id}``,
``{results.quote.amount}``) filled from the saga when the item is created."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.agents import RiskLevel
from models.enums import Outcome
from models.keytemplate import all_placeholders
from models.sla import SlaSpec
from models.work_api import AgentOffer, Offer

# What a work-item step's placeholders may refer to; ``each`` and ``each_index`` are the list
# element and its position when the step fans out.
ITEM_ROOTS = ("input", "results", "saga_id", "step", "template", "version", "each", "each_index")


class CompletionPolicy(BaseModel):
    """When a fan-out is done: every member, any one, or at least ``k`` of them."""

    # k goes with at_least, and only with it (the validator's rule, for the OpenAPI).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"properties": {"policy": {"enum": ["all", "any"]}, "k": {"type": "null"}}},
                {
                    "properties": {"policy": {"const": "at_least"}, "k": {"type": "integer"}},
                    "required": ["policy", "k"],
                },
            ]
        },
    )

    policy: Literal["all", "any", "at_least"] = Field(
        default="all", description="all: every member must be done; any: one; at_least: k of them."
    )
    k: int | None = Field(default=None, ge=1, le=10_000, description="For at_least (and only then): how many.")

    @model_validator(mode="after")
    def _k_with_at_least(self) -> CompletionPolicy:
        if (self.policy == "at_least") != (self.k is not None):
            raise ValueError("k goes with policy at_least, and only with it")
        return self

    def needed(self, members: int) -> int:
        """How many members must be done for the step to succeed."""
        if self.policy == "all":
            return members
        if self.policy == "any":
            return min(1, members)
        return self.k or 0

    def verdict(self, members: int, done: int, pending: int) -> Outcome | None:
        """The fan-out's verdict so far: succeeded once enough members are done, failed once they
        no longer can be (``pending`` still may), None while undecided."""
        needed = self.needed(members)
        if done >= needed:
            return Outcome.succeeded
        if done + pending < needed:
            return Outcome.failed
        return None

    def decided_at_start(self, members: int) -> tuple[Outcome, str | None] | None:
        """A fan-out decided before any member runs: nothing to wait for (an empty list, nothing to
        undo), or a policy no list this short can meet. None: it has to run."""
        needed = self.needed(members)
        if needed == 0:
            return Outcome.succeeded, None
        if members < needed:
            return Outcome.failed, f"FanOutFailed: {members} member(s), {needed} needed"
        return None


# Undoing a fan-out needs every member that is to be undone.
EVERY_MEMBER = CompletionPolicy()


class WorkItemStepSpec(BaseModel):
    """The work item a ``work_item`` step opens: its type, title, tenant, offer, assignee, payload and SLA."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="task", min_length=1, max_length=64, description="A registered work-item type.")
    title: str = Field(min_length=1, max_length=500, description="The item's title; may hold placeholders.")
    description: str | None = Field(
        default=None, max_length=20_000, description="The item's text; may hold placeholders; null: none."
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[^{}]+$",
        description=(
            "The tenant whose people or agents do it: the saga's own (the default, and the only one a "
            "template may name; a shared template names none)."
        ),
    )
    priority: int = Field(default=50, ge=0, le=100, description="0 (lowest) to 100 (highest).")
    offer: Offer = Field(description="Who may claim it: people by scope and group, or agents by capability.")
    assignee: str | None = Field(default=None, description="user:<id> or agent:<id>; may be a placeholder.")
    labels: list[str] = Field(
        default_factory=list, max_length=50, description="The item's labels; may hold placeholders."
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="The item's payload; strings in it may hold placeholders."
    )
    sla: SlaSpec | None = Field(default=None, description="The item's SLA, from its creation; null: none.")
    risk_level: RiskLevel | None = Field(
        default=None,
        description="How much harm the item can do: may raise its type's risk level, never lower it (the step "
        "fails with the reason otherwise); routing gives it only to agents autonomous enough. Null: the type's.",
    )

    @field_validator("offer", mode="before")
    @classmethod
    def _offer_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a work-item step needs an offer: {type: human, scope, group?} or {type: agent}")
        return value

    @model_validator(mode="after")
    def _known_placeholders(self) -> WorkItemStepSpec:
        fields = [self.title, self.description, self.tenant, self.assignee, self.labels, self.payload]
        for path in all_placeholders(fields):
            if path.split(".", 1)[0] not in ITEM_ROOTS:
                raise ValueError(f"placeholder {{{path}}} must start with one of {', '.join(ITEM_ROOTS)}")
        return self

    @property
    def for_agents(self) -> bool:
        return isinstance(self.offer, AgentOffer)
