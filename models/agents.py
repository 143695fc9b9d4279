"""The agent registry's vocabulary (work-items spec §12): who can do work, how well, how freely,
at what cost, on which data, under which safety rules.

These are the registration body and the profile routing reads. The registry (what is stored,
heartbeats, live/stale) and the router (rules, strategies) both speak these types, so an
agent registered over HTTP and one announced by a Celery worker are assigned the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = str


class AgentType(StrEnum):
    """The taxonomy's seven classes of agent."""

    stateless_tool_caller = "stateless_tool_caller"
    planner_coordinator = "planner_coordinator"
    data_access = "data_access"
    long_running_service = "long_running_service"
    sensor_monitor = "sensor_monitor"
    actuator = "actuator"
    reviewer_hitl_proxy = "reviewer_hitl_proxy"


class Autonomy(IntEnum):
    """How much an agent may do without a person: L0 (manual, a person does it) to L4 (full
    autonomy within its policy). Ordered, so "at least L2" is a comparison."""

    L0 = 0  # manual: the agent only carries out what a person ordered, step by step
    L1 = 1  # assisted: suggests; a person performs every action
    L2 = 2  # supervised: acts, each action approved by a person
    L3 = 3  # conditional: acts alone within its policy, a person approves the exceptions
    L4 = 4  # full: acts alone within its policy


class RiskLevel(StrEnum):
    """How much harm a work item can do if it goes wrong; a type declares it, an item may raise it."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


# The least autonomy an agent needs to be handed an item of each risk level on its own (§12.1
# step 2). An item above what any agent may take goes to people (or waits for a hitl gate).
MIN_AUTONOMY: dict[RiskLevel, Autonomy] = {
    RiskLevel.low: Autonomy.L1,
    RiskLevel.medium: Autonomy.L2,
    RiskLevel.high: Autonomy.L3,
    RiskLevel.critical: Autonomy.L4,
}


class Proficiency(IntEnum):
    """How well an agent does one capability; ordered for "at least" and for preferring the best."""

    novice = 1
    intermediate = 2
    advanced = 3
    expert = 4


class CapabilityDecl(BaseModel):
    """One capability (skill, tool) an agent declares, with how well it does it."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200, description="The capability, as offers and rules name it.")
    proficiency: Literal["novice", "intermediate", "advanced", "expert"] = Field(
        default="intermediate", description="How well the agent does it; routing prefers the more proficient."
    )

    @property
    def level(self) -> Proficiency:
        return Proficiency[self.proficiency]


class Budget(BaseModel):
    """What an agent may spend per period, and what happens once it is spent."""

    model_config = ConfigDict(extra="forbid")

    unit: Literal["tokens", "USD", "EUR"] = Field(description="What the limit counts: model tokens or money.")
    limit: float = Field(gt=0, allow_inf_nan=False, description="The most it may spend per period.")
    period: Literal["hour", "day", "week", "month"] = Field(default="day", description="The budget's window.")
    on_exhausted: Literal["block", "notify", "queue_for_human"] = Field(
        default="block",
        description="Once spent: block (routing skips the agent), notify (route, and send a webhook), "
        "or queue_for_human (its items go to people).",
    )


class DataBoundary(BaseModel):
    """Which data an agent may touch: datasets and regions (data residency). Empty means no limit."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[Name] = Field(default_factory=list, max_length=200, description="Datasets it may read or write.")
    regions: list[str] = Field(
        default_factory=list, max_length=200, description="Regions its data may live in (ISO codes, e.g. KE, EU)."
    )


class Safety(BaseModel):
    """The actions an agent may and may not take, and the checks around them."""

    model_config = ConfigDict(extra="forbid")

    allowed_actions: list[Name] = Field(
        default_factory=list, max_length=200, description="The actions it may take; empty: any not prohibited."
    )
    prohibited_actions: list[Name] = Field(default_factory=list, max_length=200, description="Never these.")
    two_person_rule: bool = Field(default=False, description="Its results need a second party's approval.")
    dry_run_required: bool = Field(default=False, description="It must dry-run before acting for real.")


class AgentSpec(BaseModel):
    """An agent as registered: what the router needs to decide whether, and how well, it fits an item."""

    model_config = ConfigDict(extra="forbid")

    agent_type: AgentType = Field(description="The taxonomy class.")
    capabilities: list[CapabilityDecl] = Field(
        default_factory=list, max_length=200, description="What it can do, each with a proficiency."
    )
    roles: list[Name] = Field(default_factory=list, max_length=50, description="Roles it fills (e.g. oncall).")
    groups: list[Name] = Field(default_factory=list, max_length=50, description="Groups it belongs to.")
    capacity: int = Field(default=1, ge=1, le=10_000, description="The most items it may hold claimed at once.")
    autonomy: Literal["L0", "L1", "L2", "L3", "L4"] = Field(
        default="L1", description="How freely it may act: L0 manual to L4 full autonomy."
    )
    cost_per_item: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="What one item costs it, in its budget's unit: cost-minimizing routing and budget checks.",
    )
    budget: Budget | None = Field(default=None, description="Its spending limit; null: unlimited.")
    data_boundary: DataBoundary = Field(default_factory=DataBoundary, description="The data it may touch.")
    safety: Safety = Field(default_factory=Safety, description="Its allowed and prohibited actions.")

    @model_validator(mode="after")
    def _unique_capabilities(self) -> AgentSpec:
        names = [c.name for c in self.capabilities]
        if len(names) != len(set(names)):
            raise ValueError("a capability is declared twice")
        return self

    @property
    def autonomy_level(self) -> Autonomy:
        return Autonomy[self.autonomy]

    def proficiency(self, capability: str) -> Proficiency | None:
        return next((c.level for c in self.capabilities if c.name == capability), None)


Liveness = Literal["live", "stale", "dead"]


@dataclass(frozen=True)
class Candidate:
    """A registered agent as the router sees it at one moment: its profile, how busy it is, whether
    it is alive, and what it spent in its budget's current period."""

    ref: str  # "agent:<id>", as claims and the audit trail name it
    tenant: str  # its tenant, or "*" for an operator's agent that serves every tenant
    spec: AgentSpec
    load: int  # open items it holds claimed now
    liveness: Liveness
    spent: float = 0.0  # in spec.budget.unit, in the budget's current period

    @property
    def free(self) -> int:
        return max(0, self.spec.capacity - self.load)
