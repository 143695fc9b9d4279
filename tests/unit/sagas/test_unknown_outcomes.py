"""An attempt whose outcome is unknown (timed out, lost) may have done its work: when the step
gives up on such an attempt, it is compensated too, before the steps below it."""

from __future__ import annotations

import pytest

from models.enums import Outcome, Phase, SagaState, StepState
from tests.unit.sagas.harness import Scenario, handler, retry, template


def two(*, b_undo: bool = True, max_attempts: int = 2) -> Scenario:
    s = Scenario(template(handler("a"), handler("b", undo=b_undo, retry=retry(max_attempts)))).start()
    s.succeed(0)
    return s


def give_up(s: Scenario, how: str, index: int = 1) -> None:
    """Spend the step's budget, the last attempt ending ``how``."""
    policy = s.spec.steps[index].retry
    for n in range(policy.max_attempts):
        if n:
            s.fire_retry(index)
        last = n == policy.max_attempts - 1
        if how == "timed_out" and last:
            s.time_out(index)
        elif last:
            s.report(index, Outcome(how))
        else:
            s.report(index, Outcome.failed)


@pytest.mark.parametrize("how", ["timed_out", "lost"])
def test_an_unknown_last_outcome_compensates_the_step_itself_first(how: str) -> None:
    s = two()
    give_up(s, how)
    assert s.step_states() == [StepState.succeeded, StepState.compensating]
    assert s.moves()[-1] == ("b", "compensate", 1)
    s.succeed(1, phase=Phase.compensate)
    assert s.moves()[-1] == ("a", "compensate", 1)
    s.succeed(0, phase=Phase.compensate)
    assert s.state() is SagaState.compensated
    assert s.step_states() == [StepState.compensated, StepState.compensated]


def test_a_retryable_failure_that_spends_the_budget_does_not_compensate_the_step() -> None:
    s = two()
    give_up(s, "failed")
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("a", "compensate", 1)


def test_a_non_retryable_failure_does_not_compensate_the_step() -> None:
    s = two()
    s.report(1, Outcome.failed, retryable=False)
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert ("b", "compensate", 1) not in s.moves()


@pytest.mark.parametrize("how", ["timed_out", "lost"])
def test_an_unknown_outcome_on_a_step_without_compensation_compensates_below(how: str) -> None:
    s = two(b_undo=False)
    give_up(s, how)
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves()[-1] == ("a", "compensate", 1)


def test_an_unknown_outcome_before_the_last_attempt_is_just_retried() -> None:
    s = two(max_attempts=3)
    s.report(1, Outcome.lost)
    assert s.step_states()[1] is StepState.retry_wait
    s.fire_retry(1)
    s.succeed(1)
    assert s.state() is SagaState.completed
    assert [a.outcome for a in s.attempts_of(1)] == [Outcome.lost, Outcome.succeeded]


def test_an_earlier_lost_attempt_does_not_matter_if_the_last_one_failed_cleanly() -> None:
    s = two()
    s.report(1, Outcome.lost)
    s.fire_retry(1)
    s.report(1, Outcome.failed)
    assert s.moves()[-1] == ("a", "compensate", 1)
    assert s.step_states()[1] is StepState.failed


def test_an_unknown_outcome_of_the_first_step_compensates_it_alone() -> None:
    s = Scenario(template(handler("a", retry=retry(1)), handler("b"))).start()
    s.report(0, Outcome.lost)
    assert s.moves() == [("a", "forward", 1), ("a", "compensate", 1)]
    s.succeed(0, phase=Phase.compensate)
    assert s.state() is SagaState.compensated and s.step_states()[0] is StepState.compensated


def test_the_timed_out_attempt_is_recorded_as_such() -> None:
    s = two(max_attempts=1)
    s.time_out(1)
    attempt = s.attempt(1, Phase.forward, 1)
    assert attempt is not None and attempt.outcome is Outcome.timed_out and attempt.finished_at == s.now
    assert attempt.error == "TimedOut: no report from a worker before the step's deadline"
    assert s.saga.error == f"step 'b' gave up after 1 attempt(s): {attempt.error}"


def test_a_compensation_that_is_lost_is_retried_not_compensated_again() -> None:
    s = two(max_attempts=1)
    s.report(1, Outcome.failed, retryable=False)
    s.report(0, Outcome.lost, phase=Phase.compensate)
    assert s.saga.steps[0].state is StepState.compensating
    s.fire_retry(0, Phase.compensate)
    assert s.moves()[-1] == ("a", "compensate", 2)
