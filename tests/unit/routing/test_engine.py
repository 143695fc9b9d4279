"""Which rules match an item and in what order; the first rule that yields an agent decides;
when none does, the decision keeps the first matching rule's verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.agents import Candidate
from orchestrator.routing import engine
from orchestrator.routing.checks import Needs, state_decides, static_stage
from orchestrator.routing.engine import Pool, RuledOut, Unread, matches, matching, route, whole
from orchestrator.routing.hold import Filled, _counted_full
from orchestrator.routing.inputs import ItemFacts
from tests.unit.routing.drawn import asks, candidates
from tests.unit.routing.fleet import agent, item, no_cursor, rule


@pytest.mark.parametrize(
    ("match", "facts", "expected"),
    [
        ({}, {}, True),
        ({"types": ["task", "change"]}, {"type": "change"}, True),
        ({"types": ["task"]}, {"type": "change"}, False),
        ({"labels": ["db", "urgent"]}, {"labels": ["db", "urgent", "x"]}, True),
        ({"labels": ["db", "urgent"]}, {"labels": ["db"]}, False),  # every label, not any
        ({"tenant": "acme"}, {}, True),
        ({"tenant": "globex"}, {}, False),
        ({"priority": {"min": 50, "max": 80}}, {"priority": 50}, True),
        ({"priority": {"min": 50, "max": 80}}, {"priority": 81}, False),
        ({"priority": {"min": 51}}, {"priority": 50}, False),
    ],
)
def test_match_conditions(match: dict[str, Any], facts: dict[str, Any], expected: bool) -> None:
    assert matches(rule(match=match), item(**facts)) is expected


def test_a_disabled_rule_and_another_tenants_rule_never_match() -> None:
    assert not matches(rule(enabled=False), item())
    assert not matches(rule(tenant="globex"), item())
    assert matches(rule(tenant="*"), item())  # an operator's rule applies to every tenant


def test_rules_are_tried_by_priority_then_own_before_operators_then_id() -> None:
    rules = [
        rule("b", priority=5),
        rule("a", priority=5, tenant="*"),
        rule("c", priority=5),
        rule("z", priority=9, tenant="*"),
        rule("low", priority=-1),
    ]
    assert [r.id for r in matching(rules, item(), "created")] == ["z", "b", "c", "a", "low"]


def test_a_rule_is_evaluated_again_only_on_the_triggers_it_names() -> None:
    quiet = rule(reroute_on=["sla_breach"])
    assert matching([quiet], item(), "created") and matching([quiet], item(), "manual")
    assert matching([quiet], item(), "sla_breach")
    assert not matching([quiet], item(), "failure") and not matching([quiet], item(), "lease_expired")


def test_the_first_rule_that_yields_an_agent_decides() -> None:
    fleet = [agent("sqler", caps={"sql": "expert"}), agent("pyer", caps={"python": "expert"})]
    wants_go = rule("go", priority=10, selectors=[{"kind": "capability", "value": "go"}])
    wants_py = rule("py", priority=5, selectors=[{"kind": "capability", "value": "python"}])
    decision = route([wants_py, wants_go], item(), whole(fleet), trigger="created", cursor_of=no_cursor)
    assert decision is not None and decision.chosen is not None
    assert (decision.rule.id, decision.chosen.ref) == ("py", "agent:pyer")
    assert [r.id for r in decision.matched] == ["go", "py"]
    assert decision.reason.startswith("agent:pyer chosen by rule py v1 (priority): ")


def test_when_nobody_fits_the_first_matching_rules_verdicts_are_kept() -> None:
    fleet = [agent("pyer", caps={"python": "expert"}), agent("gone", caps={"go": "expert"}, liveness="dead")]
    wants_go = rule("go", priority=10, selectors=[{"kind": "capability", "value": "go"}])
    wants_rust = rule("rust", priority=5, selectors=[{"kind": "capability", "value": "rust"}])
    decision = route([wants_go, wants_rust], item(), whole(fleet), trigger="created", cursor_of=no_cursor)
    assert decision is not None and decision.chosen is None and decision.rule.id == "go"
    assert decision.reason == (
        "no candidate for rule go v1: none of 2 agents fits (capabilities 1, liveness 1)"
        " (nor by 1 other matching rule(s))"
    )
    assert {o.ref: (o.verdict, o.check) for o in decision.outcomes} == {
        "agent:gone": ("rejected", "liveness"),
        "agent:pyer": ("rejected", "capabilities"),
    }


def test_no_matching_rule_is_no_decision() -> None:
    decision = route(
        [rule(match={"types": ["change"]})], item(), whole([agent("a")]), trigger="created", cursor_of=no_cursor
    )
    assert decision is None


def test_excluded_agents_are_passed_over_and_said_so() -> None:
    fleet = [agent("a"), agent("b")]
    decision = route(
        [rule()], item(), whole(fleet), trigger="failure", cursor_of=no_cursor, exclude=frozenset({"agent:a"})
    )
    assert decision is not None and decision.chosen is not None and decision.chosen.ref == "agent:b"
    assert ("agent:a", "excluded") in {(o.ref, o.verdict) for o in decision.outcomes}


def test_the_cursor_is_asked_only_of_round_robin_rules() -> None:
    asked: list[str] = []

    def cursor_of(r: Any) -> str | None:
        asked.append(r.id)
        return "agent:a"

    fleet = [agent("a"), agent("b")]
    route([rule("p")], item(), whole(fleet), trigger="created", cursor_of=cursor_of)
    decision = route([rule("rr", strategy="round_robin")], item(), whole(fleet), trigger="created", cursor_of=cursor_of)
    assert asked == ["rr"]
    assert decision is not None and decision.chosen is not None and decision.chosen.ref == "agent:b"


def test_each_rule_asks_for_the_pool_of_what_it_needs_and_agents_left_out_count_as_rejected() -> None:
    asked: list[frozenset[str]] = []
    fleet = [agent("sqler", caps={"sql": "expert"}, liveness="dead"), agent("other")]

    def pool_of(needs: Needs) -> Pool:
        capabilities = frozenset(needs.capabilities)
        asked.append(capabilities)
        # A source that reads only the agents declaring the capabilities, and counts the rest.
        fitting = [c for c in fleet if all(c.spec.proficiency(n) for n in capabilities)]
        return Pool(fitting, left_out=len(fleet) - len(fitting))

    sql = rule("sql", priority=2, selectors=[{"kind": "capability", "value": "sql"}])
    also_sql = rule("sql2", priority=1, selectors=[{"kind": "skill", "value": "sql"}])
    decision = route([sql, also_sql], item(capabilities=("sql",)), pool_of, trigger="created", cursor_of=no_cursor)
    assert asked == [frozenset({"sql"})]  # one pool for both rules: they need the same
    assert decision is not None and decision.chosen is None and decision.left_out == 1
    assert [(o.ref, o.check) for o in decision.outcomes] == [("agent:sqler", "liveness")]
    assert "none of 2 agents fits (capabilities 1, liveness 1)" in decision.reason


def screening(fleet: list[Candidate], gone: frozenset[str] = frozenset()) -> Callable[[Needs], Pool]:
    """A pool source as ``source.pool`` is with needs: the agents whose specs fail a check
    whatever their state are ruled out, their state unread. ``gone``: agents deregistered after
    the fleet was read: not found when their state is read (one ruled out is still listed, until
    the fleet is read again)."""

    def pool_of(needs: Needs) -> Pool:
        read: list[Candidate] = []
        out: list[RuledOut] = []
        for c in fleet:
            stage = static_stage(needs, c.spec)
            if state_decides(c.spec, stage):
                if c.ref not in gone:
                    read.append(c)
            else:
                assert stage is not None
                out.append(RuledOut(c.ref, c.tenant, c.spec, stage))
        return Pool(read, ruled_out=out)

    return pool_of


STRATEGIES = ("priority", "capacity_aware", "round_robin", "cost_minimizing")


@st.composite
def fleets(draw: st.DrawFn) -> list[Candidate]:
    agents = draw(st.lists(candidates(), min_size=1, max_size=12))
    return [replace(c, ref=f"agent:a{n}") for n, c in enumerate(agents)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(asks(), st.sampled_from(STRATEGIES)), min_size=1, max_size=3),
    fleets(),
    st.sets(st.sampled_from(("agent:a0", "agent:a1"))),
)
def test_a_source_that_rules_agents_out_by_their_specs_changes_no_decision(
    asked: list[tuple[tuple[dict[str, Any], ItemFacts], str]], fleet: list[Candidate], exclude: set[str]
) -> None:
    facts = asked[0][0][1]  # one item; each rule its own asks (its selectors, budget, residency...)
    rules = [rule(f"r{n}", priority=n, strategy=strategy, **body) for n, ((body, _), strategy) in enumerate(asked)]
    args: dict[str, Any] = {"trigger": "created", "cursor_of": no_cursor, "exclude": frozenset(exclude)}
    read_whole = route(rules, facts, whole(fleet), **args)
    screened = route(rules, facts, screening(fleet), **args)
    assert read_whole is not None and screened is not None
    assert screened.chosen == read_whole.chosen
    assert screened.reason == read_whole.reason
    assert screened.outcomes == read_whole.outcomes
    assert screened.rule == read_whole.rule


def in_turn(
    fleet: list[Candidate], reads: list[int], depths: dict[str, int] | None = None, gone: frozenset[str] = frozenset()
) -> Callable[[Needs], Pool]:
    """A pool source as ``source.pool`` is for a large fleet: agents ruled out by their specs as
    ``screening`` does, every other one unread, its state read only when the engine asks (how many
    at a time goes into ``reads``). ``gone``: agents deregistered after the fleet was read (their
    state is not found)."""
    by_ref = {c.ref: c for c in fleet}

    def pool_of(needs: Needs) -> Pool:
        unread: list[Unread] = []
        out: list[RuledOut] = []
        for c in fleet:
            stage = static_stage(needs, c.spec)
            if state_decides(c.spec, stage):
                unread.append(Unread(c.ref, c.tenant, c.spec, stage))
            else:
                assert stage is not None
                out.append(RuledOut(c.ref, c.tenant, c.spec, stage))

        def read(agents: Sequence[Unread]) -> list[Candidate]:
            reads.append(len(agents))
            return [by_ref[a.ref] for a in agents if a.ref not in gone]

        return Pool((), ruled_out=out, unread=unread, read=read, depths={} if depths is None else depths)

    return pool_of


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(asks(), st.sampled_from(STRATEGIES)), min_size=1, max_size=3),
    st.lists(candidates(), min_size=1, max_size=30),
    st.sets(st.sampled_from(("agent:a0", "agent:a1"))),
    st.sampled_from((None, "agent:a12")),
    st.integers(1, 8),
    st.sets(st.sampled_from(("agent:a03", "agent:a07", "agent:a11"))),
)
def test_reading_agents_in_the_strategys_order_chooses_as_reading_them_all_would(
    asked: list[tuple[tuple[dict[str, Any], ItemFacts], str]],
    drawn: list[Candidate],
    exclude: set[str],
    cursor: str | None,
    first_read: int,
    gone: set[str],
) -> None:
    fleet = [replace(c, ref=f"agent:a{n:02d}") for n, c in enumerate(drawn)]
    facts = asked[0][0][1]
    rules = [rule(f"r{n}", priority=n, strategy=strategy, **body) for n, ((body, _), strategy) in enumerate(asked)]
    args: dict[str, Any] = {"trigger": "created", "cursor_of": lambda _: cursor, "exclude": frozenset(exclude)}
    # Agents deregistered between the fleet's read and their state's serve the tenant no more.
    lost = frozenset(gone)
    read_whole = route(rules, facts, screening(fleet, lost), **args)
    reads: list[int] = []
    depths: dict[str, int] = {}
    with mock.patch.object(engine, "FIRST_READ", first_read):
        lazy = route(rules, facts, in_turn(fleet, reads, depths, lost), **args)
        again = route(rules, facts, in_turn(fleet, [], depths, lost), **args)  # starting as deep as the last needed
    assert read_whole is not None and lazy is not None and again is not None
    assert (lazy.rule, lazy.chosen) == (read_whole.rule, read_whole.chosen)
    assert (again.rule, again.chosen) == (read_whole.rule, read_whole.chosen)
    if lazy.chosen is None:
        # Nobody fits: every agent was read, and the verdicts are the whole read's.
        assert lazy.unread == 0 and lazy.outcomes == read_whole.outcomes and lazy.reason == read_whole.reason
    else:
        # Those read keep their verdicts; the others are counted, never listed, and the reason
        # counts the same agents (but one deregistered and never read, which nothing tells apart).
        listed = {o.ref: o for o in lazy.outcomes}
        assert all(o == listed[o.ref] for o in read_whole.outcomes if o.ref in listed and o.verdict != "eligible")
        # An agent whose spec fails a check is read (or ruled out) whatever the strategy: listed.
        static = ("capabilities", "autonomy", "data_boundary", "safety")
        assert all(o.ref in listed for o in read_whole.outcomes if o.check in static)
        counted = len(lazy.outcomes) + lazy.unread
        assert len(read_whole.outcomes) <= counted <= len(read_whole.outcomes) + len(gone)
        if not gone:
            assert (
                read_whole.reason.split("; ")[-1].split(" agents")[0].split(" of ")[1]
                == (lazy.reason.split("; ")[-1].split(" agents")[0].split(" of ")[1])
            )


def test_a_large_pool_is_read_only_as_deep_as_the_strategy_needs() -> None:
    # 100 agents that all fit; the most proficient (by ref: a00) fits, so the first read settles it.
    fleet = [agent(f"a{n:02d}", caps={"sql": "expert" if n < 10 else "novice"}, capacity=2) for n in range(100)]
    reads: list[int] = []
    sql = rule("sql", strategy="priority", selectors=[{"kind": "capability", "value": "sql"}])
    decision = route([sql], item(), in_turn(fleet, reads), trigger="created", cursor_of=no_cursor)
    assert decision is not None and decision.chosen is not None and decision.chosen.ref == "agent:a00"
    assert reads == [engine.FIRST_READ]
    assert decision.unread == 100 - engine.FIRST_READ
    assert decision.reason.endswith(
        f"{engine.FIRST_READ} of 100 agents found to fit, {100 - engine.FIRST_READ} not read "
        "(by the strategy none of them could come before it)"
    ), decision.reason


def test_a_pool_whose_best_agents_filled_up_is_read_as_deep_as_last_time_in_one_go() -> None:
    # The 40 cheapest are full: the first decision reads FIRST_READ, then the rest; the next starts
    # as deep as the first had to go.
    fleet = [agent(f"a{n:02d}", cost_per_item=n, capacity=1, load=1 if n < 40 else 0) for n in range(100)]
    cheap = rule("cheap", strategy="cost_minimizing")
    depths: dict[str, int] = {}
    first: list[int] = []
    decision = route([cheap], item(), in_turn(fleet, first, depths), trigger="created", cursor_of=no_cursor)
    assert decision is not None and decision.chosen is not None and decision.chosen.ref == "agent:a40"
    assert first == [engine.FIRST_READ, 100 - engine.FIRST_READ]
    assert depths == {"cost_minimizing": 41}  # up to a40: no agent after it could cost less
    second: list[int] = []
    decision = route([cheap], item(), in_turn(fleet, second, depths), trigger="created", cursor_of=no_cursor)
    assert decision is not None and decision.chosen is not None and decision.chosen.ref == "agent:a40"
    assert second == [41]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(("db", "web", "urgent", "eu", "us")), max_size=2, unique=True),
            st.integers(0, 3),
        ),
        min_size=0,
        max_size=40,
    ),
    st.sets(st.sampled_from(("db", "web", "urgent", "eu", "us", "other"))),
)
def test_matching_by_the_label_index_finds_what_checking_every_rule_finds(
    drawn: list[tuple[list[str], int]], labels: set[str]
) -> None:
    rules = [rule(f"r{n:02d}", priority=p, match={"labels": names}) for n, (names, p) in enumerate(drawn)]
    facts = item(labels=labels)
    every = sorted((r for r in rules if matches(r, facts)), key=lambda r: (-r.spec.priority, r.operators, r.id))
    assert matching(rules, facts, "created") == every
    assert matching(rules, facts, "created") == every  # the second time from the kept index


@st.composite
def busy_fleets(draw: st.DrawFn) -> list[Candidate]:
    """Agents that differ only in what the strategies rank by and in their state: most of them fit."""
    size = draw(st.integers(1, 40))
    return [
        agent(
            f"a{n:02d}",
            caps={"sql": draw(st.sampled_from(("novice", "intermediate", "advanced", "expert")))},
            capacity=draw(st.integers(1, 4)),
            load=draw(st.integers(0, 4)),
            liveness=draw(st.sampled_from(("live", "live", "live", "dead"))),
            cost_per_item=draw(st.sampled_from((1.0, 2.0, 3.0))),
        )
        for n in range(size)
    ]


@settings(max_examples=400, deadline=None)
@given(
    busy_fleets(),
    st.sampled_from(STRATEGIES),
    st.sampled_from((None, "agent:a05", "agent:a20")),
    st.integers(1, 6),
)
def test_in_a_busy_fleet_each_strategy_read_in_turn_chooses_the_agent_a_whole_read_chooses(
    fleet: list[Candidate], strategy: str, cursor: str | None, first_read: int
) -> None:
    sql = rule("sql", strategy=strategy, selectors=[{"kind": "capability", "value": "sql"}])
    args: dict[str, Any] = {"trigger": "created", "cursor_of": lambda _: cursor}
    read_whole = route([sql], item(), whole(fleet), **args)
    with mock.patch.object(engine, "FIRST_READ", first_read):
        lazy = route([sql], item(), in_turn(fleet, []), **args)
    assert read_whole is not None and lazy is not None
    assert lazy.chosen == read_whole.chosen


@settings(max_examples=300, deadline=None)
@given(
    busy_fleets(),
    st.sampled_from(STRATEGIES),
    st.dictionaries(st.integers(0, 39), st.one_of(st.none(), st.integers(0, 4)), max_size=4),
    st.integers(1, 6),
)
def test_agents_the_hold_found_full_are_counted_full_in_the_agents_read_later_too(
    fleet: list[Candidate], strategy: str, filled: dict[int, int | None], first_read: int
) -> None:
    # The capacity hold decides again with the agents it found full counted full (``hold._counted_full``):
    # over a pool read in turn, that must hold for the agents read after the wrapping as well.
    found_full = {f"agent:a{n:02d}": Filled(load, 4) for n, load in filled.items()}
    sql = rule("sql", strategy=strategy, selectors=[{"kind": "capability", "value": "sql"}])

    def counted(pool_of: Callable[[Needs], Pool]) -> Callable[[Needs], Pool]:
        return lambda needs: _counted_full(pool_of(needs), found_full, None)

    args: dict[str, Any] = {"trigger": "created", "cursor_of": no_cursor}
    read_whole = route([sql], item(), counted(whole(fleet)), **args)
    with mock.patch.object(engine, "FIRST_READ", first_read):
        lazy = route([sql], item(), counted(in_turn(fleet, [])), **args)
    assert read_whole is not None and lazy is not None
    assert lazy.chosen == read_whole.chosen
