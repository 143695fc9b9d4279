"""The assignment algorithm's filters (work-items spec §12.1), in its order: capabilities (the
rule's selectors and the item's own needs), autonomy against the item's risk, budget, data
boundary, safety, then capacity and liveness. An agent is out at the first check it fails; that
check's name and the reason in words are what the decision records.

Pure: rules, item facts and candidates in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import cached_property

from models.agents import MIN_AUTONOMY, AgentSpec, Autonomy, Candidate, Proficiency, RiskLevel
from models.routing import AgentTypeSelector, CapabilitySelector, CostBudget, MembershipSelector, RoutingRuleSpec
from orchestrator.routing.inputs import ItemFacts

CHECKS = ("capabilities", "autonomy", "budget", "data_boundary", "safety", "capacity", "liveness")
# The checks a decision reads the agents' state for (their spend, load, heartbeat), by index.
BUDGET, CAPACITY, LIVENESS = 2, 5, 6
# An item that needs a person in the loop goes to agents that act under supervision or more
# freely (L2+): an L0/L1 agent only suggests, so a gate would have nothing to approve.
HITL_AUTONOMY = Autonomy.L2
# Proficiency and autonomy by name, as agents declare them (an enum lookup per agent per decision costs more).
RANK: dict[str, int] = {p.name: int(p) for p in Proficiency}
_AUTONOMY: dict[str, int] = {a.name: int(a) for a in Autonomy}


@dataclass(frozen=True)
class Needs:
    """What one rule asks of an agent for one item, worked out once per decision."""

    capabilities: Mapping[str, Proficiency]  # name -> the least proficiency
    roles: frozenset[str]
    groups: frozenset[str]
    agent_types: frozenset[str]  # any of them; empty: any class
    risk: RiskLevel
    hitl: bool
    autonomy: Autonomy
    budget: CostBudget | None
    regions: frozenset[str] | None  # None: anywhere
    datasets: frozenset[str]
    actions: frozenset[str]

    @cached_property
    def screen_key(self) -> Hashable:
        """What :func:`static_stage` reads of these needs, as a key: needs with the same key rule
        out the same agents at the same checks (the risk and human-in-the-loop count through
        ``autonomy``; they change only the words)."""
        budget = (self.budget.currency, self.budget.limit) if self.budget is not None else None
        return (
            tuple(sorted(self.capabilities.items())),
            self.roles,
            self.groups,
            self.agent_types,
            self.autonomy,
            budget,
            self.regions,
            self.datasets,
            self.actions,
        )


def needs_of(rule: RoutingRuleSpec, facts: ItemFacts) -> Needs:
    capabilities: dict[str, Proficiency] = dict.fromkeys(facts.capabilities, Proficiency.novice)
    roles: set[str] = set()
    groups: set[str] = set()
    agent_types: set[str] = set()
    for selector in rule.selectors:
        if isinstance(selector, CapabilitySelector):
            least = Proficiency[selector.min_proficiency] if selector.min_proficiency else Proficiency.novice
            capabilities[selector.value] = max(least, capabilities.get(selector.value, Proficiency.novice))
        elif isinstance(selector, MembershipSelector):
            (roles if selector.kind == "role" else groups).add(selector.value)
        elif isinstance(selector, AgentTypeSelector):
            agent_types.add(selector.value.value)
    hitl = facts.hitl or bool(rule.hitl and rule.hitl.required)
    autonomy = MIN_AUTONOMY[facts.risk]
    if hitl:
        autonomy = max(autonomy, HITL_AUTONOMY)
    return Needs(
        capabilities=capabilities,
        roles=frozenset(roles),
        groups=frozenset(groups),
        agent_types=frozenset(agent_types),
        risk=facts.risk,
        hitl=hitl,
        autonomy=autonomy,
        budget=rule.cost_budget,
        regions=frozenset(rule.data_residency.allowed_regions) if rule.data_residency else None,
        datasets=facts.datasets,
        actions=facts.actions | frozenset(rule.actions),
    )


def first_failure(needs: Needs, candidate: Candidate) -> tuple[int, str] | None:
    """The first check the candidate fails (its index in CHECKS, §12.1's order), and why; None if it fits."""
    stage = failing_stage(needs, candidate)
    if stage is None:
        return None
    return stage, why_failed(stage, needs, candidate)


def why_failed(stage: int, needs: Needs, candidate: Candidate) -> str:
    """Why the candidate fails the check at ``stage``, in words."""
    why = WORDED[stage](needs, candidate)
    assert why is not None, f"{candidate.ref} passes {CHECKS[stage]}"
    return why


def failing_stage(needs: Needs, c: Candidate) -> int | None:
    """The first check the candidate fails, as its index in CHECKS; None if it fits.

    The checks' conditions without their words: a decision runs it for every candidate of every
    rule it tries (a thousand agents, a dozen rules), and words only for the verdicts it lists.
    ``tests/unit/routing/test_check_stages.py`` holds it to the worded checks below."""
    return stage_given(c, static_stage(needs, c.spec))


def stage_given(c: Candidate, stage: int | None) -> int | None:
    """:func:`failing_stage`, the candidate's :func:`static_stage` for the needs known already
    (a pool's screen worked it out once for every decision)."""
    spec = c.spec
    if stage is not None and stage <= BUDGET:
        return stage
    if _spent_out(spec, c.spent):
        return BUDGET
    if stage is not None:
        return stage
    if c.load >= spec.capacity:
        return CAPACITY
    if c.liveness != "live":
        return LIVENESS
    return None


def static_stage(needs: Needs, spec: AgentSpec) -> int | None:
    """The first check the agent's spec fails, whatever its state (load, liveness, spend): the
    capabilities, autonomy, the rule's side of the budget (currency, cost per item), the data
    boundary and safety; None if it passes them all.

    An agent failing the capabilities, autonomy or budget here fails that check whatever its
    state; one failing the data boundary or safety does too unless its own budget, which its
    spend decides, fails before (:func:`state_decides`)."""
    ranks = ranks_of(spec)
    for name, least in needs.capabilities.items():
        if ranks.get(name, 0) < least:
            return 0
    if needs.roles and not needs.roles.issubset(spec.roles):
        return 0
    if needs.groups and not needs.groups.issubset(spec.groups):
        return 0
    if needs.agent_types and spec.agent_type.value not in needs.agent_types:
        return 0
    if _AUTONOMY[spec.autonomy] < needs.autonomy:
        return 1
    if needs.budget is not None:
        budget = spec.budget
        if budget is not None and budget.unit != needs.budget.currency:
            return BUDGET
        if spec.cost_per_item > needs.budget.limit:
            return BUDGET
    boundary = spec.data_boundary
    if needs.regions is not None and (not boundary.regions or not needs.regions.issuperset(boundary.regions)):
        return 3
    if needs.datasets and boundary.datasets and not needs.datasets.issubset(boundary.datasets):
        return 3
    if needs.actions:
        safety = spec.safety
        if not needs.actions.isdisjoint(safety.prohibited_actions):
            return 4
        if safety.allowed_actions and not needs.actions.issubset(safety.allowed_actions):
            return 4
    return None


def state_decides(spec: AgentSpec, stage: int | None) -> bool:
    """Whether the verdict on an agent whose spec fails ``stage`` first (:func:`static_stage`)
    depends on its state: it passes every static check, or it fails one after the budget's and
    has a budget that its spend may have used up (then the budget is the check it fails)."""
    if stage is None:
        return True
    budget = spec.budget
    return stage > BUDGET and budget is not None and budget.on_exhausted != "notify"


def _spent_out(spec: AgentSpec, spent: float) -> bool:
    """Whether the agent's own budget, one that stops it, has no room for one more item."""
    budget = spec.budget
    if budget is None or budget.on_exhausted == "notify":
        return False
    left = budget.limit - spent
    return left <= 0 or left < spec.cost_per_item


def ranks_of(spec: AgentSpec) -> dict[str, int]:
    """Each capability the spec declares, its proficiency as a number, by name: compared for a
    thousand agents a decision, so worked out once per spec object (not on the model: a copy made
    with ``model_copy(update=...)`` would carry a cached value over)."""
    entry = _RANKS.get(id(spec))
    if entry is None or entry[0] is not spec:  # an id is reused once its object is gone
        if len(_RANKS) >= _RANKS_MAX:
            _RANKS.clear()
        entry = _RANKS[id(spec)] = (spec, {c.name: RANK[c.proficiency] for c in spec.capabilities})
    return entry[1]


# id(spec) -> (the spec, kept alive so that its id names it, its ranks)
_RANKS: dict[int, tuple[AgentSpec, dict[str, int]]] = {}
_RANKS_MAX = 100_000


def proficiency(needs: Needs, candidate: Candidate) -> int:
    """How well the candidate does what is asked: its weakest required capability (0: none asked)."""
    if not needs.capabilities:
        return 0
    ranks = ranks_of(candidate.spec)
    return min(ranks.get(name, 0) for name in needs.capabilities)


def _capabilities(needs: Needs, c: Candidate) -> str | None:
    spec = c.spec
    for name, least in needs.capabilities.items():
        # A scan of the few it declares, by name: cheaper than a map per agent per decision.
        declared = next((d for d in spec.capabilities if d.name == name), None)
        if declared is None:
            return f"lacks capability {name}"
        if RANK[declared.proficiency] < least:
            return f"does {name} at {declared.proficiency}; the rule needs {least.name}"
    missing_role = needs.roles.difference(spec.roles)
    if missing_role:
        return f"does not fill role {', '.join(sorted(missing_role))}"
    missing_group = needs.groups.difference(spec.groups)
    if missing_group:
        return f"is not in group {', '.join(sorted(missing_group))}"
    if needs.agent_types and spec.agent_type.value not in needs.agent_types:
        return f"is a {spec.agent_type.value} agent, not {' or '.join(sorted(needs.agent_types))}"
    return None


def _autonomy(needs: Needs, c: Candidate) -> str | None:
    have = c.spec.autonomy_level
    if have >= needs.autonomy:
        return None
    if needs.hitl and needs.autonomy == HITL_AUTONOMY and MIN_AUTONOMY[needs.risk] < HITL_AUTONOMY:
        return f"autonomy {have.name} is below {needs.autonomy.name}, which an item with a human in the loop needs"
    return f"autonomy {have.name} is below {needs.autonomy.name}, which a {needs.risk.value}-risk item needs"


def _budget(needs: Needs, c: Candidate) -> str | None:
    spec = c.spec
    unit = spec.budget.unit if spec.budget else None
    cost = spec.cost_per_item
    if needs.budget is not None:
        # An agent without a budget of its own states its cost in the rule's currency.
        if unit is not None and unit != needs.budget.currency:
            return f"counts its costs in {unit}; the rule's budget is in {needs.budget.currency}"
        if cost > needs.budget.limit:
            return f"costs {cost:g} {needs.budget.currency} per item, over the rule's limit of {needs.budget.limit:g}"
    if spec.budget is not None and spec.budget.on_exhausted != "notify":
        left = spec.budget.limit - c.spent
        if left <= 0 or left < cost:
            period = spec.budget.period
            return f"has {max(left, 0):g} {spec.budget.unit} left of its {period}'s budget; an item costs {cost:g}"
    return None


def _data_boundary(needs: Needs, c: Candidate) -> str | None:
    boundary = c.spec.data_boundary
    if needs.regions is not None:
        if not boundary.regions:
            return f"declares no data regions; the rule allows only {', '.join(sorted(needs.regions))}"
        outside = set(boundary.regions).difference(needs.regions)
        if outside:
            return f"may keep data in {', '.join(sorted(outside))}, outside {', '.join(sorted(needs.regions))}"
    # An agent that lists no datasets may touch any.
    if needs.datasets and boundary.datasets:
        missing = needs.datasets.difference(boundary.datasets)
        if missing:
            return f"may not touch dataset {', '.join(sorted(missing))}"
    return None


def _safety(needs: Needs, c: Candidate) -> str | None:
    if not needs.actions:
        return None
    safety = c.spec.safety
    prohibited = needs.actions.intersection(safety.prohibited_actions)
    if prohibited:
        return f"is prohibited from {', '.join(sorted(prohibited))}"
    if safety.allowed_actions:
        not_allowed = needs.actions.difference(safety.allowed_actions)
        if not_allowed:
            return f"is not allowed to {', '.join(sorted(not_allowed))}"
    return None


def _capacity(_: Needs, c: Candidate) -> str | None:
    return None if c.free > 0 else f"is at capacity: holds {c.load} of {c.spec.capacity}"


def _liveness(_: Needs, c: Candidate) -> str | None:
    return None if c.liveness == "live" else f"is {c.liveness}"


# CHECKS, in order, as functions that say why a candidate fails one (None: it passes).
WORDED: tuple[Callable[[Needs, Candidate], str | None], ...] = (
    _capabilities,
    _autonomy,
    _budget,
    _data_boundary,
    _safety,
    _capacity,
    _liveness,
)
