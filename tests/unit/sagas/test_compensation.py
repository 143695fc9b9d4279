"""Compensation: strictly in reverse order over the steps that succeeded, one at a time, each
retried by its own policy; a compensation that fails for good stops there (invariant 4)."""

from __future__ import annotations

from typing import Any

import pytest

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from tests.unit.sagas.harness import Scenario, handler, retry, template

COMP_RETRY: dict[str, Any] = {"compensate_retry": retry(4, 50)}


def four(*, b_undo: bool = True) -> Scenario:
    """Steps a, b, c succeed; d fails for good."""
    s = Scenario(
        template(
            handler("a", **COMP_RETRY),
            handler("b", undo=b_undo, **COMP_RETRY),
            handler("c", **COMP_RETRY),
            handler("d"),
        )
    ).start()
    s.succeed(0, 1, 2)
    s.report(3, Outcome.failed, retryable=False)
    return s


def undo_all(s: Scenario, *indexes: int) -> None:
    for index in indexes:
        s.succeed(index, phase=Phase.compensate)


def test_a_failure_compensates_the_latest_succeeded_step_first() -> None:
    s = four()
    assert s.state() is SagaState.compensating
    assert s.step_states() == [StepState.succeeded, StepState.succeeded, StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("c", "compensate", 1)
    assert len(s.last_sent) == 1  # one compensation at a time


def test_compensations_run_in_strict_reverse_order_one_at_a_time() -> None:
    s = four()
    for index in (2, 1, 0):
        assert s.moves()[-1][0] == "abc"[index]
        undo_all(s, index)
    assert s.moves()[4:] == [("c", "compensate", 1), ("b", "compensate", 1), ("a", "compensate", 1)]
    assert s.state() is SagaState.compensated
    assert s.step_states() == [StepState.compensated] * 3 + [StepState.failed]


def test_a_compensation_dispatch_calls_the_undo_handler_with_the_results() -> None:
    s = four()
    d = s.dispatches(s.last_sent)[0]
    assert (d.handler, d.phase, d.attempt, d.step_index) == ("undo_c", Phase.compensate, 1, 2)
    assert d.idempotence_key == "s-1:c:compensate"
    assert d.results == {"a": {"step": "a"}, "b": {"step": "b"}, "c": {"step": "c"}}
    assert s.last_sent[0]["shadow"] == "undo_c (compensating c)"
    assert s.last_sent[0]["task_id"] == "s-1-2-c1"


def test_steps_without_a_compensation_are_passed_over() -> None:
    s = four(b_undo=False)
    undo_all(s, 2)
    assert s.moves()[-1] == ("a", "compensate", 1)
    undo_all(s, 0)
    assert s.state() is SagaState.compensated
    assert s.step_states() == [StepState.compensated, StepState.succeeded, StepState.compensated, StepState.failed]


def test_a_failing_first_step_leaves_nothing_to_compensate() -> None:
    s = Scenario(template(handler("a"), handler("b"))).start()
    s.report(0, Outcome.failed, retryable=False)
    assert s.state() is SagaState.compensated
    assert s.step_states() == [StepState.failed, StepState.pending]
    assert s.moves() == [("a", "forward", 1)]
    assert s.event_names() == ["saga.compensated"]


def test_nothing_compensable_below_compensates_at_once() -> None:
    s = Scenario(template(handler("a", undo=False), handler("b", undo=False), handler("c"))).start()
    s.succeed(0, 1)
    s.report(2, Outcome.failed, retryable=False)
    assert s.state() is SagaState.compensated
    assert s.step_states() == [StepState.succeeded, StepState.succeeded, StepState.failed]


def test_a_failed_compensation_is_retried_by_the_compensation_policy() -> None:
    s = four()
    s.report(2, Outcome.failed, phase=Phase.compensate)
    step = s.saga.steps[2]
    assert step.state is StepState.compensating and step.compensation_attempts == 1 and step.attempts == 1
    timer = s.timers["dispatch:s-1:2:compensate:2"]
    assert timer.kind == TimerKind.dispatch and (timer.due_at - s.now).total_seconds() == 0.05
    s.fire_retry(2, Phase.compensate)
    assert s.moves()[-1] == ("c", "compensate", 2)
    undo_all(s, 2)
    assert s.moves()[-1] == ("b", "compensate", 1)


def test_without_a_compensation_policy_the_step_retry_policy_applies() -> None:
    s = Scenario(template(handler("a", retry=retry(2, 70)), handler("b"))).start()
    s.succeed(0)
    s.report(1, Outcome.failed, retryable=False)
    s.report(0, Outcome.failed, phase=Phase.compensate)
    (timer,) = s.timers.values()
    assert (timer.due_at - s.now).total_seconds() == 0.07
    s.fire_retry(0, Phase.compensate)
    s.report(0, Outcome.failed, phase=Phase.compensate)
    assert s.state() is SagaState.compensation_failed  # budget of 2


def test_a_deferred_compensation_is_retried_without_counting() -> None:
    s = four()
    s.report(2, Outcome.deferred, phase=Phase.compensate)
    assert s.saga.steps[2].compensation_attempts == 0
    s.fire_retry(2, Phase.compensate)
    assert s.moves()[-1] == ("c", "compensate", 2)


def spend_compensation(s: Scenario, index: int, attempts: int) -> None:
    for n in range(attempts):
        if n:
            s.fire_retry(index, Phase.compensate)
        s.report(index, Outcome.failed, phase=Phase.compensate, error="refund refused")


def test_a_compensation_that_spends_its_budget_fails_the_saga_and_stops_there() -> None:
    s = four()
    spend_compensation(s, 2, 4)
    assert s.state() is SagaState.compensation_failed
    assert s.step_states() == [
        StepState.succeeded,
        StepState.succeeded,
        StepState.compensation_failed,
        StepState.failed,
    ]
    assert s.saga.steps[2].compensation_attempts == 4
    assert s.saga.error == "compensation of step 'c' gave up after 4 attempt(s): Boom: refund refused"
    assert [m for m in s.moves() if m[1] == "compensate"] == [("c", "compensate", n) for n in (1, 2, 3, 4)]
    assert s.saga.finished_at == s.now


def test_a_failed_compensation_opens_a_remediation_item() -> None:
    s = four()
    spend_compensation(s, 2, 4)
    assert s.store.remediations == [{"saga": "s-1", "step": "c", "error": "Boom: refund refused", "tenant": "ops"}]


def test_a_non_retryable_compensation_failure_fails_at_once() -> None:
    s = four()
    s.report(2, Outcome.failed, phase=Phase.compensate, retryable=False)
    assert s.state() is SagaState.compensation_failed
    assert s.saga.steps[2].compensation_attempts == 1
    assert len(s.store.remediations) == 1


def test_a_compensation_failing_lower_down_keeps_what_was_undone() -> None:
    s = four()
    undo_all(s, 2)
    s.report(1, Outcome.failed, phase=Phase.compensate, retryable=False)
    assert s.step_states() == [
        StepState.succeeded,
        StepState.compensation_failed,
        StepState.compensated,
        StepState.failed,
    ]
    assert s.store.remediations[0]["step"] == "b"


def test_a_duplicate_compensation_report_changes_nothing() -> None:
    s = four()
    undo_all(s, 2)
    assert s.report(2, phase=Phase.compensate, attempt=1) is False
    assert s.moves()[-1] == ("b", "compensate", 1) and s.saga.steps[2].state is StepState.compensated


def sla_and_deadline() -> dict[str, object]:
    return {"deadline_ms": 60_000, "sla": {"target_ms": 30_000, "warn_at_pct": 50}}


@pytest.mark.parametrize("ending", ["completed", "compensated", "compensation_failed"])
def test_a_finished_saga_drops_its_timers_and_emits_one_event(ending: str) -> None:
    s = Scenario(template(handler("a"), handler("b"), **sla_and_deadline())).start()
    assert s.timer_kinds() == ["saga_deadline", "saga_sla_breach", "saga_sla_warn"]
    s.succeed(0)
    if ending == "completed":
        s.succeed(1)
    else:
        s.report(1, Outcome.failed, retryable=False)
        s.report(
            0, Outcome.succeeded if ending == "compensated" else Outcome.failed, phase=Phase.compensate, retryable=False
        )
    assert s.state() == ending
    assert s.timers == {}
    assert s.event_names() == [f"saga.{ending}"]
    payload = s.store.events[0][1]["saga"]
    assert payload["state"] == ending and payload["id"] == "s-1" and payload["template"] == "unit.saga"
    assert (payload["error"] is None) is (ending == "completed")


def test_the_compensated_saga_keeps_the_error_that_started_it() -> None:
    s = four()
    undo_all(s, 2, 1, 0)
    assert s.saga.error == "step 'd' failed with a non-retryable error: Boom: it broke"
    assert s.store.events[-1][1]["saga"]["error"] == s.saga.error


def test_compensation_attempt_numbers_start_again_at_one() -> None:
    s = Scenario(template(handler("a", retry=retry(3)), handler("b"))).start()
    s.report(0, Outcome.failed)
    s.fire_retry(0)
    s.succeed(0)
    s.report(1, Outcome.failed, retryable=False)
    assert s.moves()[-1] == ("a", "compensate", 1)
    assert s.saga.steps[0].current_attempt == 1 and s.saga.steps[0].attempts == 2
