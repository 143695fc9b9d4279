"""The routing engine: which live rules match an item, and, for the first that yields one, which
registered agent gets it. Pure (no database): the caller loads the rules, the item's facts, the
candidates and a round-robin rule's cursor, and applies and records the decision.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from models.agents import AgentSpec, Candidate
from models.routing import RETRIGGERS, Trigger, Verdict
from orchestrator.routing.checks import CHECKS, Needs, failing_stage, needs_of, stage_given, why_failed
from orchestrator.routing.inputs import ItemFacts, LiveRule, LiveRules
from orchestrator.routing.strategies import Key, bound_of, key_of, ranked, why_chosen

# How many verdicts a decision lists by name, with the reason in words (the rest are counted by check).
LISTED = 100
# A pool's unread agents are read this many at first (or as deep as the last decision over the pool
# with the same strategy had to read, ``Pool.depths``), then, if that did not settle the choice,
# the rest (``evaluate``): two round trips at most.
FIRST_READ = 32
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


class Unread(NamedTuple):
    """An agent whose verdict depends on its state (load, liveness, spend), not read yet: read only
    if the rule's strategy could rank it before the best fitting agent read so far. ``stage``: the
    check its spec fails whatever its state (``checks.static_stage``; then its spend only says
    whether the budget fails first, and it is read only when no agent fits), None: none."""

    ref: str
    tenant: str
    spec: AgentSpec
    stage: int | None


# Reads the state of some of a pool's unread agents: them as candidates (a deregistered one left out).
ReadState = Callable[[Sequence[Unread]], Sequence[Candidate]]


@dataclass(frozen=True)
class Pool:
    """The candidates a rule is evaluated against: the agents serving the tenant that declare every
    capability it needs (a source may give more: each is checked anyway), how many serving agents
    the source left out for lacking one (counted as rejected by the capabilities check), and the
    agents it found failing a check their spec decides, their state unread (``ruled_out``).

    A source may give the agents whose state it has not read yet as ``unread``, with ``read`` to
    read them: the engine reads them in its strategy's order, as few as it needs to choose."""

    agents: Sequence[Candidate]
    left_out: int = 0
    ruled_out: Sequence[RuledOut] = ()
    unread: Sequence[Unread] = ()
    read: ReadState | None = None
    # By strategy, how many of ``unread`` the last decision over the same pool had to read to settle
    # its choice: where the next one starts (the best agents of a busy fleet fill up first).
    depths: MutableMapping[str, int] = field(default_factory=dict)


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
    unread: int = 0  # agents whose state was never read: the strategy could rank none before the chosen


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
    # Nor these: their state was not read, as the strategy could rank none of them before the chosen.
    unread: int = 0


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
        r
        # A tenant's live rules come with an index by label: only those that could match are checked.
        for r in (rules.may_match(facts.labels) if isinstance(rules, LiveRules) else rules)
        if matches(r, facts) and (trigger not in RETRIGGERS or trigger in r.conditions.retriggers)
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
    unread: Sequence[Unread] = (),
    read: ReadState | None = None,
    depths: MutableMapping[str, int] | None = None,
) -> Evaluation:
    """Filter the candidates by §12.1's checks for this rule and item, and let the rule's strategy
    choose. ``left_out`` serving agents were not given for lacking a needed capability;
    ``ruled_out`` ones fail the check they name, whatever their state; ``unread`` ones are read
    (``read``) in the order of the strategy's bound, until no unread agent could come before the
    best that fits: the choice is the one reading them all would make, and those left unread are
    only counted.

    Every verdict names its check; the words of why are worked out for the first ``LISTED``
    verdicts only (those a decision lists), the rest keep an empty reason."""
    needs = needs_of(rule.spec, facts)
    sorting = _Sorting(needs, facts.holder, exclude)
    for unread_out in ruled_out:
        sorting.out.append((_EXCLUDED if unread_out.ref in exclude else unread_out.stage, unread_out.ref, unread_out))
    sorting.sort(candidates)
    skipped = gone = 0
    if unread:
        assert read is not None, "a pool with unread agents reads them"
        skipped, gone = _read_in_turn(rule, needs, cursor, unread, read, sorting, {} if depths is None else depths)
    fit, out = sorting.fit, sorting.out
    # The rejected that got furthest first: they are the ones worth reading.
    out.sort(key=lambda entry: (-entry[0], entry[1]))
    worded = max(0, LISTED - len(fit))
    rejected = tuple(_verdict(stage, needs, candidate, words=n < worded) for n, (stage, _, candidate) in enumerate(out))
    # An agent deregistered since the fleet was read no longer serves the tenant: not counted.
    total = len(candidates) + len(ruled_out) + len(unread) - gone + left_out
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
    tally = f"{len(fit)} of {total} agents fit"
    if skipped:
        tally = (
            f"{len(fit)} of {total} agents found to fit, {skipped} not read "
            "(by the strategy none of them could come before it)"
        )
    return Evaluation(rule, chosen, f"{why}; {tally}", outcomes, left_out, skipped)


class _Sorting:
    """Candidates sorted into those that fit and those out (with the check they fail), as read."""

    def __init__(self, needs: Needs, holder: str | None, exclude: frozenset[str]):
        self.needs, self.holder, self.exclude = needs, holder, exclude
        self.fit: list[Candidate] = []
        self.out: list[tuple[int, str, Candidate | RuledOut]] = []

    def sort(self, candidates: Sequence[Candidate], static: Mapping[str, int | None] | None = None) -> None:
        """``static``: each candidate's ``checks.static_stage`` by ref, if known already."""
        needs, holder, exclude, fit, out = self.needs, self.holder, self.exclude, self.fit, self.out
        for candidate in candidates:
            if candidate.ref == holder and candidate.load > 0:
                # Its load counts this very item: keeping it adds nothing.
                candidate = replace(candidate, load=candidate.load - 1)
            if candidate.ref in exclude:
                out.append((_EXCLUDED, candidate.ref, candidate))
                continue
            if static is None:
                stage = failing_stage(needs, candidate)
            else:
                stage = stage_given(candidate, static[candidate.ref])
            if stage is None:
                fit.append(candidate)
            else:
                out.append((stage, candidate.ref, candidate))


def _read_in_turn(
    rule: LiveRule,
    needs: Needs,
    cursor: str | None,
    unread: Sequence[Unread],
    read: ReadState,
    sorting: _Sorting,
    depths: MutableMapping[str, int],
) -> tuple[int, int]:
    """Read the unread agents into ``sorting`` in the order of the strategy's bound, until the best
    that fits has a key no unread agent's bound can beat (or all are read): first as many as
    ``depths`` says the last decision needed (at least ``FIRST_READ``), then, if that did not
    settle it, the rest. Agents whose spec fails a check whatever their state (their spend says
    only which check, the budget or that one) are read with the first: they never fit, and their
    verdict is worded as a whole read would word it. How many were never read, and how many read
    were gone (deregistered since the fleet was read); ``depths`` learns how many were needed."""
    strategy = rule.spec.strategy
    key, bound = key_of(strategy, needs, cursor), bound_of(strategy, needs, cursor)
    hopeless: list[Unread] = []
    turns: list[tuple[Key, Unread]] = []
    for agent in unread:
        if agent.ref in sorting.exclude:  # failed this item before: out whatever its state
            sorting.out.append((_EXCLUDED, agent.ref, RuledOut(agent.ref, agent.tenant, agent.spec, _EXCLUDED)))
        elif agent.stage is not None:
            hopeless.append(agent)
        else:
            turns.append((bound(agent.ref, agent.spec), agent))
    turns.sort(key=lambda turn: turn[0])
    best = min(map(key, sorting.fit), default=None)
    done, gone, size = 0, 0, max(FIRST_READ, depths.get(strategy, 0))
    while True:
        more = done < len(turns) and (best is None or turns[done][0] < best)
        if not (more or hopeless):
            break
        taken = [agent for _, agent in turns[done : done + size]] if more else []
        batch = [*hopeless, *taken]
        done += len(taken)
        hopeless = []
        size = len(turns)  # the first read did not settle it: the rest in one round trip
        found = len(sorting.fit)
        agents = read(batch)
        gone += len(batch) - len(agents)
        # The screen that made the pool worked out each one's static stage for needs like these.
        sorting.sort(agents, {agent.ref: agent.stage for agent in batch})
        least = min(map(key, sorting.fit[found:]), default=None)
        if least is not None and (best is None or least < best):
            best = least
    depths[strategy] = _needed(turns, best, key, sorting.fit)
    return len(turns) - done, gone


def _needed(
    turns: Sequence[tuple[Key, Unread]], best: Key | None, key: Callable[[Candidate], Key], fit: Sequence[Candidate]
) -> int:
    """How many of ``turns`` (in bound order) a read had to take to settle the choice: up to the
    chosen one, and on to the first whose bound the chosen's key does not beat."""
    if best is None:
        return len(turns)  # nobody fits: every one was read
    chosen = next(c.ref for c in fit if key(c) == best)
    position = next((n for n, (_, agent) in enumerate(turns) if agent.ref == chosen), -1)
    beaten = bisect_left([bound for bound, _ in turns], best)
    return max(position + 1, beaten)


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
    if isinstance(candidate, RuledOut):
        return _ruled_out_verdict(candidate, needs)
    return CandidateOutcome(candidate.ref, "rejected", CHECKS[stage], why_failed(stage, needs, candidate))


def _ruled_out_verdict(agent: RuledOut, needs: Needs) -> CandidateOutcome:
    """The verdict on an agent its spec rules out: the same for every decision with needs like these
    (its words read only the spec, and of the needs what the screen key, the order the capabilities
    are asked in, the risk and the human in the loop name), so worded once."""
    # The capabilities in the order the rule asks them too: the words name the first one missing.
    key = (id(agent.spec), agent.ref, agent.stage, needs.screen_key, tuple(needs.capabilities), needs.risk, needs.hitl)
    kept = _RULED_OUT_WORDS.get(key)
    if kept is None or kept[0] is not agent.spec:  # an id is reused once its object is gone
        if len(_RULED_OUT_WORDS) >= _RULED_OUT_WORDS_MAX:
            _RULED_OUT_WORDS.clear()
        outcome = CandidateOutcome(
            agent.ref, "rejected", CHECKS[agent.stage], why_failed(agent.stage, needs, agent.unread())
        )
        kept = _RULED_OUT_WORDS[key] = (agent.spec, outcome)
    return kept[1]


# (id of the spec, ref, stage, what of the needs the words read) -> (the spec, kept alive so that
# its id names it, the verdict)
_RULED_OUT_WORDS: dict[Hashable, tuple[AgentSpec, CandidateOutcome]] = {}
_RULED_OUT_WORDS_MAX = 100_000


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
        # A pool still to read is read by the evaluation as far as it needs: a first pass would read it twice.
        if first is not None and not pool.unread and not any_fits(rule, facts, pool.agents, exclude):
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
            unread=pool.unread,
            read=pool.read,
            depths=pool.depths,
        )
        if evaluation.chosen is not None:
            reason = f"{evaluation.chosen.ref} chosen by {rule.label} ({rule.spec.strategy}): {evaluation.why}"
            return Decision(
                rule,
                evaluation.chosen,
                reason,
                evaluation.outcomes,
                tuple(matched),
                pool.left_out,
                evaluation.unread,
            )
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
