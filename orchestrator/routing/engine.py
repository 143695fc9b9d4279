"""The routing engine: which live rules match an item, and, for the first that yields one, which
registered agent gets it. Pure (no database): the caller loads the rules, the item's facts, the
candidates and a round-robin rule's cursor, and applies and records the decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from models.agents import AgentSpec, Candidate
from models.routing import RETRIGGERS, Trigger, Verdict
from orchestrator.routing.checks import CHECKS, Needs, failing_stage, needs_of, why_failed
from orchestrator.routing.inputs import ItemFacts, LiveRule
from orchestrator.routing.strategies import ranked, why_chosen

# How many verdicts a decision lists by name, with the reason in words (the rest are counted by check).
LISTED = 100
# A round-robin rule's cursor: the ref it chose last for this item's tenant (None: never).
CursorOf = Callable[[LiveRule], str | None]


class RuledOut(NamedTuple):
    """An agent the source found failing a check its spec decides (``checks.static_stage``), whose
    state it therefore did not read: ``stage`` is that check's index in CHECKS."""

    ref: str
    tenant: str
    spec: AgentSpec
    stage: int

    def unread(self) -> Candidate:
        """The agent as a candidate, for the words of its verdict: those of a check its spec
        decides read only the spec (``tests/unit/routing/test_check_stages.py``), so the state
        given here, never read, is never read from it either."""
        return Candidate(self.ref, self.tenant, self.spec, load=0, liveness="live")


@dataclass(frozen=True)
class Pool:
    """The candidates a rule is evaluated against: the agents serving the tenant that declare every
    capability it needs (a source may give more: each is checked anyway), how many serving agents
    the source left out for lacking one (counted as rejected by the capabilities check), and the
    agents it found failing a check their spec decides, their state unread (``ruled_out``)."""

    agents: Sequence[Candidate]
    left_out: int = 0
    ruled_out: Sequence[RuledOut] = ()


# The pool for a rule, by what the rule asks for the item: a source may read only the agents that
# declare the capabilities asked, and rule out by their specs those that fail a check whatever their
# state. The engine asks once per ``Needs.screen_key``.
PoolOf = Callable[[Needs], Pool]


def whole(candidates: Sequence[Candidate]) -> PoolOf:
    """Every candidate for every rule, none left out."""
    pool = Pool(tuple(candidates))
    return lambda _: pool


class CandidateOutcome(NamedTuple):
    """What one evaluation made of one candidate (a tuple: a thousand are made per decision)."""

    ref: str
    verdict: Verdict
    check: str | None
    why: str


@dataclass(frozen=True)
class Evaluation:
    """One rule against one item and the candidates: the chosen agent, if any, and every verdict
    (chosen, then the other fitting ones in the strategy's order, then the excluded and rejected,
    those that got furthest through the checks first)."""

    rule: LiveRule
    chosen: Candidate | None
    why: str
    outcomes: tuple[CandidateOutcome, ...]
    left_out: int = 0


@dataclass(frozen=True)
class Decision:
    """The router's answer for an item: the deciding rule (the first that matched, when none
    yielded an agent), the agent chosen (None: nobody fits), the reason and every verdict."""

    rule: LiveRule
    chosen: Candidate | None
    reason: str
    outcomes: tuple[CandidateOutcome, ...]
    matched: tuple[LiveRule, ...]
    # Serving agents not among the outcomes: they lack a capability the rule needs.
    left_out: int = 0


def matches(rule: LiveRule, facts: ItemFacts) -> bool:
    """Whether the rule applies to the item: every condition its match gives holds."""
    when = rule.conditions
    if not when.enabled or rule.tenant not in (facts.tenant, "*"):
        return False
    if when.tenant is not None and when.tenant != facts.tenant:
        return False
    if when.types and facts.type not in when.types:
        return False
    if when.labels and not when.labels <= facts.labels:
        return False
    return when.lowest <= facts.priority <= when.highest


def matching(rules: Sequence[LiveRule], facts: ItemFacts, trigger: Trigger) -> list[LiveRule]:
    """The rules that apply to the item on this trigger, in the order they are tried: higher
    priority first, a tenant's own before an operator's, then by id."""
    found = [
        r for r in rules if matches(r, facts) and (trigger not in RETRIGGERS or trigger in r.conditions.retriggers)
    ]
    return sorted(found, key=lambda r: (-r.spec.priority, r.operators, r.id))


def evaluate(
    rule: LiveRule,
    facts: ItemFacts,
    candidates: Sequence[Candidate],
    *,
    cursor: str | None = None,
    exclude: frozenset[str] = frozenset(),
    left_out: int = 0,
    ruled_out: Sequence[RuledOut] = (),
) -> Evaluation:
    """Filter the candidates by §12.1's checks for this rule and item, and let the rule's strategy
    choose. ``left_out`` serving agents were not given for lacking a needed capability;
    ``ruled_out`` ones fail the check they name, whatever their state.

    Every verdict names its check; the words of why are worked out for the first ``LISTED``
    verdicts only (those a decision lists), the rest keep an empty reason."""
    needs = needs_of(rule.spec, facts)
    fit: list[Candidate] = []
    out: list[tuple[int, str, Candidate | RuledOut]] = []
    holder = facts.holder
    for unread in ruled_out:
        out.append((_EXCLUDED if unread.ref in exclude else unread.stage, unread.ref, unread))
    for candidate in candidates:
        if candidate.ref == holder and candidate.load > 0:
            # Its load counts this very item: keeping it adds nothing.
            candidate = replace(candidate, load=candidate.load - 1)
        if candidate.ref in exclude:
            out.append((_EXCLUDED, candidate.ref, candidate))
            continue
        stage = failing_stage(needs, candidate)
        if stage is None:
            fit.append(candidate)
        else:
            out.append((stage, candidate.ref, candidate))
    # The rejected that got furthest first: they are the ones worth reading.
    out.sort(key=lambda entry: (-entry[0], entry[1]))
    worded = max(0, LISTED - len(fit))
    rejected = tuple(_verdict(stage, needs, candidate, words=n < worded) for n, (stage, _, candidate) in enumerate(out))
    total = len(candidates) + len(ruled_out) + left_out
    if not fit:
        return Evaluation(rule, None, _none_fit(total, rejected, left_out), rejected, left_out)
    order = ranked(rule.spec.strategy, fit, needs, cursor)
    chosen = order[0]
    why = why_chosen(rule.spec.strategy, chosen, needs, cursor)
    outcomes = (
        CandidateOutcome(chosen.ref, "chosen", None, why),
        *(CandidateOutcome(c.ref, "eligible", None, "fits; not first by the strategy") for c in order[1:]),
        *rejected,
    )
    return Evaluation(rule, chosen, f"{why}; {len(fit)} of {total} agents fit", outcomes, left_out)


def any_fits(rule: LiveRule, facts: ItemFacts, candidates: Sequence[Candidate], exclude: frozenset[str]) -> bool:
    """Whether :func:`evaluate` would choose someone: one cheap pass, stopping at the first that fits."""
    needs = needs_of(rule.spec, facts)
    for candidate in candidates:
        if candidate.ref in exclude:
            continue
        if candidate.ref == facts.holder and candidate.load > 0:
            candidate = replace(candidate, load=candidate.load - 1)
        if failing_stage(needs, candidate) is None:
            return True
    return False


_EXCLUDED = len(CHECKS)  # sorts after every check: an excluded agent passed them all, or was never tried


def _verdict(stage: int, needs: Needs, candidate: Candidate | RuledOut, *, words: bool) -> CandidateOutcome:
    if stage == _EXCLUDED:
        return CandidateOutcome(candidate.ref, "excluded", None, "failed this item before")
    if not words:
        return CandidateOutcome(candidate.ref, "rejected", CHECKS[stage], "")
    read = candidate.unread() if isinstance(candidate, RuledOut) else candidate
    return CandidateOutcome(candidate.ref, "rejected", CHECKS[stage], why_failed(stage, needs, read))


def route(
    rules: Sequence[LiveRule],
    facts: ItemFacts,
    pool_of: PoolOf,
    *,
    trigger: Trigger,
    cursor_of: CursorOf,
    exclude: frozenset[str] = frozenset(),
) -> Decision | None:
    """The decision for an item: None when no rule applies; else the first matching rule that
    yields an agent decides, and when none does, the first matching rule's verdicts are kept."""
    matched = matching(rules, facts, trigger)
    if not matched:
        return None
    first: Evaluation | None = None
    pools: dict[Hashable, Pool] = {}
    for rule in matched:
        needs = needs_of(rule.spec, facts)
        pool = pools.get(needs.screen_key)
        if pool is None:
            pool = pools[needs.screen_key] = pool_of(needs)
        if first is not None and not any_fits(rule, facts, pool.agents, exclude):
            continue  # only the first rule's verdicts are kept when none yields: no need to word these
        cursor = cursor_of(rule) if rule.spec.strategy == "round_robin" else None
        evaluation = evaluate(
            rule,
            facts,
            pool.agents,
            cursor=cursor,
            exclude=exclude,
            left_out=pool.left_out,
            ruled_out=pool.ruled_out,
        )
        if evaluation.chosen is not None:
            reason = f"{evaluation.chosen.ref} chosen by {rule.label} ({rule.spec.strategy}): {evaluation.why}"
            return Decision(rule, evaluation.chosen, reason, evaluation.outcomes, tuple(matched), pool.left_out)
        first = first or evaluation
    assert first is not None
    others = f" (nor by {len(matched) - 1} other matching rule(s))" if len(matched) > 1 else ""
    reason = f"no candidate for {first.rule.label}: {first.why}{others}"
    return Decision(first.rule, None, reason, first.outcomes, tuple(matched), first.left_out)


def _none_fit(total: int, rejected: Sequence[CandidateOutcome], left_out: int) -> str:
    if not total:
        return "no agent is registered for the tenant"
    counts = Counter(o.check or o.verdict for o in rejected)
    counts["capabilities"] += left_out
    by_check = ", ".join(f"{name} {counts[name]}" for name in (*CHECKS, "excluded") if counts[name])
    return f"none of {total} agents fits ({by_check})"
