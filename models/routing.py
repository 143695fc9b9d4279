"""Routing rules (work-items spec §4): declarative objects that say which work items they apply to
(``match``), which agents may take them (``selectors``, a cost budget, data residency, the
actions the work involves), how one of those is chosen (``strategy``), and what follows
(``escalation``, a human in the loop, a fallback offer to people).

Field names are snake_case like the rest of the API; the spec's camelCase spellings
(``costBudget``, ``dataResidency.allowedRegions``, ``escalation.onTimeoutMs``, ``steps[].afterMs``,
``minProficiency``, ``rerouteOn``, and ``match.type`` for ``match.types``) are accepted as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.agents import AgentType
from models.hitl import Hitl
from models.sla import ACTIONS, BreachAction
from models.spellings import accept_spellings
from models.work_api import WorkItemRead

Strategy = Literal["priority", "capacity_aware", "round_robin", "cost_minimizing"]
# What made the router look at an item: its creation, or one of the re-routing triggers.
Trigger = Literal["created", "failure", "lease_expired", "sla_breach", "manual"]
# The triggers a rule may opt out of (creation and a manual reroute always evaluate).
Retrigger = Literal["failure", "lease_expired", "sla_breach"]
RETRIGGERS: tuple[Retrigger, ...] = get_args(Retrigger)
ProficiencyName = Literal["novice", "intermediate", "advanced", "expert"]
Currency = Literal["USD", "EUR", "tokens"]

RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
Name = Annotated[str, Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(min_length=1, max_length=100)]
Region = Annotated[str, Field(min_length=1, max_length=64)]

STRATEGIES = (
    "priority: the most proficient in the required capabilities, then by ref; capacity_aware: the most free "
    "capacity relative to capacity; round_robin: the next after the last one this rule chose, in ref order; "
    "cost_minimizing: the lowest cost_per_item, then the most free capacity."
)


class PriorityRange(BaseModel):
    """An inclusive range of item priorities (0 to 100)."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(default=0, ge=0, le=100, description="The lowest priority the rule applies to.")
    max: int = Field(default=100, ge=0, le=100, description="The highest priority the rule applies to.")

    @model_validator(mode="after")
    def _ordered(self) -> PriorityRange:
        if self.min > self.max:
            raise ValueError("priority.min must not exceed priority.max")
        return self


class RuleMatch(BaseModel):
    """Which work items a rule applies to: every condition given must hold (an empty match: every item)."""

    model_config = ConfigDict(extra="forbid")

    types: list[Name] = Field(
        default_factory=list,
        max_length=50,
        description="The item's type is one of these (also accepted as `type`, the spec's spelling); []: any type.",
    )
    labels: list[Label] = Field(
        default_factory=list, max_length=50, description="The item carries every one of these labels; []: any."
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Only this tenant's items (for an operator's rule; a tenant's rule sees only its own); null: any.",
    )
    priority: PriorityRange | None = Field(default=None, description="The item's priority is in this range; null: any.")

    _spellings = model_validator(mode="before")(accept_spellings({"type": "types"}))


class CapabilitySelector(BaseModel):
    """The agent declares a capability; ``skill`` is the same with a proficiency that matters."""

    model_config = ConfigDict(extra="forbid", title="capability or skill selector")

    kind: Literal["capability", "skill"] = Field(description="capability or skill: the agent declares `value`.")
    value: Name = Field(description="The capability's name, as agents declare it.")
    min_proficiency: ProficiencyName | None = Field(
        default=None,
        description="At least this proficiency in it (also accepted as `minProficiency`); null: any.",
    )

    _spellings = model_validator(mode="before")(accept_spellings({"minProficiency": "min_proficiency"}))


class MembershipSelector(BaseModel):
    """The agent fills a role, or belongs to a group."""

    model_config = ConfigDict(extra="forbid", title="role or group selector")

    kind: Literal["role", "group"] = Field(description="role or group: the agent lists `value` among its own.")
    value: Name = Field(description="The role's or the group's name.")


class AgentTypeSelector(BaseModel):
    """The agent is of one of the taxonomy's classes (several such selectors: any of them)."""

    model_config = ConfigDict(extra="forbid", title="agent_type selector")

    kind: Literal["agent_type"] = Field(description="agent_type: the agent is of class `value`.")
    value: AgentType = Field(description="The taxonomy class.")


Selector = Annotated[CapabilitySelector | MembershipSelector | AgentTypeSelector, Field(discriminator="kind")]


class CostBudget(BaseModel):
    """The most one item may cost the agent that takes it."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency = Field(description="What the limit counts; agents whose budget counts another unit are out.")
    limit: float = Field(
        gt=0, le=1e12, allow_inf_nan=False, description="An agent whose cost_per_item is above this is out."
    )


class DataResidency(BaseModel):
    """Where the item's data may be processed."""

    model_config = ConfigDict(extra="forbid")

    allowed_regions: list[Region] = Field(
        min_length=1,
        max_length=200,
        description="The regions an agent's data boundary must lie within (also accepted as `allowedRegions`); "
        "an agent that declares no regions is out.",
    )

    _spellings = model_validator(mode="before")(accept_spellings({"allowedRegions": "allowed_regions"}))


def _escalate_has_one_group() -> dict[str, Any]:
    """JSON Schema: an escalate step names exactly one group in ``to`` (the validator's rule)."""
    one = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "maxItems": 1}]}
    return {
        "anyOf": [
            {"properties": {"action": {"not": {"const": "escalate"}}}},
            {"properties": {"action": {"const": "escalate"}, "to": one}, "required": ["action", "to"]},
        ]
    }


class RuleEscalationStep(BaseModel):
    """One rung of a rule's escalation ladder: a breach action this long after the item's creation."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_escalate_has_one_group())

    after_ms: int = Field(
        ge=0, le=366 * 86_400_000, description="From the item's creation (also accepted as `afterMs`)."
    )
    action: BreachAction = Field(description=f"What to do. {ACTIONS}")
    to: Name | list[Name] | None = Field(
        default=None,
        description="Who: for escalate, exactly one group (a string or a one-element list) the item is offered "
        'to next; for the other actions, recorded with the step (e.g. ["assignee"]).',
    )

    _spellings = model_validator(mode="before")(accept_spellings({"afterMs": "after_ms"}))

    @model_validator(mode="after")
    def _escalate_names_one_group(self) -> RuleEscalationStep:
        if self.action == "escalate" and len(self.recipients) != 1:
            raise ValueError("an escalate step names exactly one group in `to`")
        if isinstance(self.to, str):
            self.to = [self.to]  # one form to read back, whichever was sent
        return self

    @property
    def recipients(self) -> list[str]:
        if self.to is None:
            return []
        return [self.to] if isinstance(self.to, str) else list(self.to)


class RuleEscalation(BaseModel):
    """The escalation path of the items a rule routes: a target time and a ladder of steps.

    An item the rule routes when it is created, and that has no SLA of its own, gets this as its
    SLA (target ``on_timeout_ms``, breach action notify, these steps), run by the same durable
    timers as any SLA; its breach is a re-routing trigger."""

    model_config = ConfigDict(extra="forbid")

    on_timeout_ms: int = Field(
        gt=0,
        le=366 * 86_400_000,
        description="The item is late this long after its creation: the SLA's target (also accepted as `onTimeoutMs`).",
    )
    steps: list[RuleEscalationStep] = Field(
        default_factory=list, max_length=20, description="The ladder, each step at its after_ms (kept in that order)."
    )

    _spellings = model_validator(mode="before")(accept_spellings({"onTimeoutMs": "on_timeout_ms"}))

    @model_validator(mode="after")
    def _in_order(self) -> RuleEscalation:
        # The ladder climbs in time order whatever order it was written in (the SLA's rule).
        self.steps = sorted(self.steps, key=lambda s: s.after_ms)
        return self

    def groups(self) -> list[str]:
        """Every group the ladder may offer the item to."""
        return [s.recipients[0] for s in self.steps if s.action == "escalate"]


class Fallback(BaseModel):
    """Where an item goes when no agent fits: offered to people."""

    model_config = ConfigDict(extra="forbid")

    group: Name | None = Field(default=None, description="Only people in this group may claim it; null: anyone.")
    scope: Name = Field(default="work:claim", description="The token scope a person needs to claim it.")


class RoutingRuleSpec(BaseModel):
    """A routing rule's definition: what it matches, whom it selects, how it chooses, what follows."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=RULE_ID_PATTERN,
        description="The rule's id within its tenant; registering an id again adds a version.",
    )
    description: str | None = Field(default=None, max_length=2000, description="What the rule is for; null: none.")
    priority: int = Field(
        default=0, ge=-1000, le=1000, description="Rule order: rules of higher priority are tried first."
    )
    enabled: bool = Field(default=True, description="A disabled rule is kept but never applied.")
    match: RuleMatch = Field(default_factory=RuleMatch, description="Which items it applies to.")
    selectors: list[Selector] = Field(
        default_factory=list,
        max_length=20,
        description="Who may take the items: an agent must satisfy every capability, skill, role and group "
        "selector, and be of one of the agent_type selectors' classes (if any); []: any agent.",
    )
    strategy: Strategy = Field(default="priority", description=f"How one of the fitting agents is chosen. {STRATEGIES}")
    cost_budget: CostBudget | None = Field(
        default=None, description="The most an item may cost (also accepted as `costBudget`); null: no limit."
    )
    data_residency: DataResidency | None = Field(
        default=None, description="Where the data may be processed (also accepted as `dataResidency`); null: anywhere."
    )
    actions: list[Name] = Field(
        default_factory=list,
        max_length=50,
        description="Actions the items' work involves, besides those in an item's metadata.actions: an agent "
        "whose safety constraints prohibit (or do not allow) one is out.",
    )
    escalation: RuleEscalation | None = Field(
        default=None, description="The escalation path of the items it routes; null: none."
    )
    hitl: Hitl | None = Field(default=None, description="A human in the loop for its items; null: none.")
    fallback: Fallback | None = Field(
        default=None, description="Where an item goes when no agent fits; null: it is left as it is."
    )
    reroute_on: list[Retrigger] = Field(
        default_factory=lambda: list(RETRIGGERS),
        max_length=3,
        description="The re-routing triggers the rule is evaluated again on (also accepted as `rerouteOn`): "
        "failure (the holder fails the item: it goes to another agent if one fits, else it fails), "
        "lease_expired, sla_breach. Creation and a manual reroute always evaluate it.",
    )

    _spellings = model_validator(mode="before")(
        accept_spellings({"costBudget": "cost_budget", "dataResidency": "data_residency", "rerouteOn": "reroute_on"})
    )

    def groups(self) -> list[str]:
        """Every group the rule may offer items to (its escalation ladder, its fallback)."""
        named = self.escalation.groups() if self.escalation else []
        return named + ([self.fallback.group] if self.fallback and self.fallback.group else [])


class RoutingRuleCreate(RoutingRuleSpec):
    """A request to register a routing rule (or a new version of one with the same id)."""

    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Whose items it routes. Default: the token's tenant; an all-tenant token's default is "
        "'*' (an operator's rule, tried for every tenant).",
    )

    def spec(self) -> RoutingRuleSpec:
        return RoutingRuleSpec.model_validate(self.model_dump(exclude={"tenant"}))


class RoutingRuleRead(RoutingRuleSpec):
    """A routing rule as stored: its definition, tenant and version."""

    tenant: str = Field(description="Whose items it routes ('*': an operator's rule, for every tenant).")
    version: int = Field(description="The version, from 1; each registration of the id adds one.")
    created_by: str = Field(description="Who registered this version, as user:<id> or agent:<id>.")
    created_at: datetime = Field(description="When this version was registered.")


class RoutingRuleDetail(RoutingRuleRead):
    """A routing rule's live (latest) version, and every version it had."""

    versions: list[RoutingRuleRead] = Field(description="Every version, oldest first; the last is the live one.")


class RoutingRuleList(BaseModel):
    """The routing rules a token sees, live versions only, in the order they are tried."""

    rules: list[RoutingRuleRead] = Field(description="Highest priority first; disabled ones included.")


class RerouteRequest(BaseModel):
    """A request to evaluate an item's routing rules again, now."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000, description="Why, kept with the decision; null: none.")


Verdict = Literal["chosen", "eligible", "rejected", "excluded"]


class CandidateVerdict(BaseModel):
    """What a routing decision made of one registered agent."""

    ref: str = Field(description="The agent, as agent:<id>.")
    verdict: Verdict = Field(
        description="chosen; eligible (fit, not chosen); rejected (failed a check); excluded (it failed this "
        "item before)."
    )
    check: str | None = Field(
        description="The first check it failed, in the spec's §12.1 order: capabilities, autonomy, budget, "
        "data_boundary, safety, capacity, liveness; null unless rejected."
    )
    why: str = Field(description="Why, in words.")


class RoutingDecisionRead(BaseModel):
    """One routing decision about one item, with the spec's audit fields (reason, ruleId,
    candidates, chosenAssignee) under the spec's names."""

    id: int = Field(description="The decision's number; later decisions have larger ones.")
    itemId: str = Field(description="The work item decided about.")
    trigger: Trigger = Field(
        description="What made the router look: created, failure, lease_expired, sla_breach or manual."
    )
    ruleId: str | None = Field(description="The rule that decided (or the first that matched, when none fit).")
    ruleVersion: int | None = Field(description="That rule's version.")
    ruleTenant: str | None = Field(description="That rule's tenant ('*': an operator's rule).")
    strategy: str | None = Field(description="That rule's strategy.")
    reason: str = Field(description="The decision in words.")
    candidates: list[CandidateVerdict] = Field(
        description="The registered agents considered and what became of each (chosen first, then eligible, "
        "then rejected; at most 100, the rest counted in `omitted`)."
    )
    omitted: dict[str, int] = Field(
        description="Agents left out of `candidates`, counted by the check they failed; `unread`: agents that "
        "pass every check their profile decides but whose state (load, liveness, spend) was never read, because "
        "the rule's strategy could rank none of them before the chosen one (a pool of more than 32 agents is "
        "read in the strategy's order, as far as needed)."
    )
    chosenAssignee: str | None = Field(description="The agent the item was given to, as agent:<id>; null: none fit.")
    previousAssignee: str | None = Field(description="Its assignee before the decision; null: none.")
    actor: str = Field(description="Who caused the decision: the creator, the failing holder, system, the caller.")
    at: datetime = Field(description="When it was made.")


class RerouteResult(BaseModel):
    """What a reroute did: the decision (null when no rule matches the item) and the item after it."""

    decision: RoutingDecisionRead | None = Field(description="The decision; null: no enabled rule matches the item.")
    item: WorkItemRead = Field(description="The item after the decision.")
