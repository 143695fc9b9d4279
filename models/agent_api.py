"""Request and response bodies of the agent registry's API (``/api/v1/agents``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from models.agents import AgentSpec, AgentType, Budget, CapabilityDecl, DataBoundary, Liveness, Safety

# An agent's id is the principal id of its tokens (``agent:<id>``) and a path segment of the API:
# no slash, and it starts with a letter or digit (so never "." or "..", which URLs fold away).
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+:-]*$"
HeartbeatSource = Literal["http", "mcp", "celery"]


class AgentCreate(AgentSpec):
    """A request to register an agent: its id and tenant, and its spec (type, capabilities,
    capacity, autonomy, budget, data boundary, safety)."""

    id: str = Field(
        min_length=1,
        max_length=255,
        pattern=AGENT_ID_PATTERN,
        description=(
            "The agent's id: the principal id of its tokens (agent:<id>). Letters, digits and . _ @ + : -, "
            "starting with a letter or digit."
        ),
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "The tenant it serves, or * for an operator's agent that serves every tenant. Default: the token's "
            "(an all-tenant token's: *). Another tenant than the token's is a 403."
        ),
    )

    def spec(self) -> AgentSpec:
        """The spec alone, without id and tenant."""
        return AgentSpec.model_validate(self.model_dump(exclude={"id", "tenant"}))


# Spec fields an update cannot set to null (what null would mean is said per field otherwise).
_NOT_NULL = ("agent_type", "capabilities", "roles", "groups", "capacity", "autonomy", "cost_per_item")


def _no_null(schema: dict[str, Any]) -> None:
    # None means "left out" in Python; the OpenAPI offers only the non-null branch.
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if branches:
        schema.update(branches[0])
    schema.pop("default", None)


class AgentUpdate(BaseModel):
    """Spec fields to change, each replacing the old value whole; leave out what stays.
    ``version`` (or an If-Match header) applies it only if nobody changed the agent since."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, description="Apply only if the agent is still at this version (409 otherwise)."
    )
    agent_type: AgentType | None = Field(default=None, json_schema_extra=_no_null, description="A new taxonomy class.")
    capabilities: list[CapabilityDecl] | None = Field(
        default=None,
        max_length=200,
        json_schema_extra=_no_null,
        description="The capabilities, replacing the old ones ([] removes them all); each name once.",
    )
    roles: list[str] | None = Field(
        default=None, max_length=50, json_schema_extra=_no_null, description="The roles, replacing the old ones."
    )
    groups: list[str] | None = Field(
        default=None, max_length=50, json_schema_extra=_no_null, description="The groups, replacing the old ones."
    )
    capacity: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        json_schema_extra=_no_null,
        description="The most items it may hold claimed at once.",
    )
    autonomy: Literal["L0", "L1", "L2", "L3", "L4"] | None = Field(
        default=None, json_schema_extra=_no_null, description="How freely it may act: L0 manual to L4 full autonomy."
    )
    cost_per_item: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        json_schema_extra=_no_null,
        description="What one item costs it, in its budget's unit.",
    )
    budget: Budget | None = Field(default=None, description="A new spending limit; null removes it (unlimited).")
    data_boundary: DataBoundary | None = Field(
        default=None, description="The data it may touch, replacing the old boundary; null: no limit."
    )
    safety: Safety | None = Field(
        default=None, description="Its allowed and prohibited actions, replacing the old ones; null: no rules."
    )

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(f"cannot be null; leave {info.field_name} out to keep it")
        return value

    @field_validator("capabilities")
    @classmethod
    def _unique_capabilities(cls, value: list[CapabilityDecl] | None) -> list[CapabilityDecl] | None:
        # As AgentSpec says it: one proficiency per capability.
        names = [c.name for c in value or []]
        if len(names) != len(set(names)):
            raise ValueError("a capability is declared twice")
        return value


class AgentRead(BaseModel):
    """A registered agent as the registry shows it: its spec, whether it is alive, how busy it is
    and what it spent."""

    id: str = Field(description="The agent's id (its tokens' principal id).")
    ref: str = Field(description="agent:<id>, as claims and the audit trail name it.")
    tenant: str = Field(description="The tenant it serves; *: every tenant (an operator's agent).")
    spec: AgentSpec = Field(description="What it is and may do, as registered.")
    liveness: Liveness = Field(
        description="live (heard from within WORKYARD_AGENT_STALE_AFTER_S), stale (within "
        "WORKYARD_AGENT_DEAD_AFTER_S) or dead (longer ago, or never)."
    )
    last_heartbeat_at: datetime | None = Field(description="When it was last heard from; null: never.")
    last_heartbeat_source: HeartbeatSource | None = Field(
        description="How it was last heard from: http, mcp or celery (a worker's presence); null: never."
    )
    load: int = Field(description="Open work items it holds a live claim on now.")
    capacity: int = Field(description="The most items it may hold claimed at once (from its spec).")
    spent: float = Field(description="What it spent in its budget's current period, in the budget's unit.")
    period_start: datetime | None = Field(
        description="When the current budget period began (UTC hour, day, ISO week or month); null: nothing spent."
    )
    version: int = Field(description="Grows with every change of its spec: send it back to update an unchanged one.")
    registered_by: str = Field(description="Who registered it: user:<id>, agent:<id>, or system:celery.")
    registered_at: datetime = Field(description="When it was (last) registered.")
    updated_at: datetime = Field(description="When its spec last changed.")


class AgentPage(BaseModel):
    """One page of agents, in the order of tenant and id, with the cursor of the next page."""

    agents: list[AgentRead] = Field(description="The agents of this page.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")
