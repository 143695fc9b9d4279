"""The router runs ``failing_stage`` (the checks' conditions without words) for every candidate,
and the worded checks only for the verdicts a decision lists: both must reject the same agents
at the same check, whatever is asked and whoever is asked."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings

from models.agents import Candidate
from orchestrator.routing.checks import (
    BUDGET,
    CAPACITY,
    LIVENESS,
    WORDED,
    failing_stage,
    needs_of,
    state_decides,
    static_stage,
    why_failed,
)
from orchestrator.routing.engine import RuledOut
from orchestrator.routing.inputs import ItemFacts
from tests.unit.routing.drawn import asks, candidates
from tests.unit.routing.fleet import rule


@settings(max_examples=2000, deadline=None)
@given(asks(), candidates())
def test_the_fast_checks_reject_at_the_same_check_as_the_worded_ones(
    ask: tuple[dict[str, Any], ItemFacts], c: Candidate
) -> None:
    body, facts = ask
    needs = needs_of(rule(**body).spec, facts)
    worded = next((stage for stage, check in enumerate(WORDED) if check(needs, c) is not None), None)
    assert failing_stage(needs, c) == worded
    event(f"stage {worded}")  # `pytest --hypothesis-show-statistics`: every check is reached


@settings(max_examples=2000, deadline=None)
@given(asks(), candidates())
def test_the_checks_a_spec_decides_give_the_same_verdict_without_the_state(
    ask: tuple[dict[str, Any], ItemFacts], c: Candidate
) -> None:
    """A source rules an agent out by its spec alone (``static_stage``) and reads the state only of
    those ``state_decides`` names: the verdict, and its words, must be the ones the state would give."""
    body, facts = ask
    needs = needs_of(rule(**body).spec, facts)
    stage = static_stage(needs, c.spec)
    if state_decides(c.spec, stage):
        # Read: whatever the state, it fails no check the spec passed (bar the budget, read too).
        assert failing_stage(needs, c) in (stage, BUDGET, CAPACITY, LIVENESS, None)
        return
    assert stage is not None
    assert failing_stage(needs, c) == stage
    unread = RuledOut(c.ref, c.tenant, c.spec, stage).unread()
    assert failing_stage(needs, unread) == stage
    assert why_failed(stage, needs, unread) == why_failed(stage, needs, c)
    event(f"ruled out at {stage}")
