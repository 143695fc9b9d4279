from __future__ import annotations

import pytest

from models.enums import Outcome, StepState
from models.template import RetryPolicy, StepSpec
from orchestrator.sagas.planner import DEFER_DELAY_MS, GiveUp, Retry, after_failure, next_compensation

POLICY = RetryPolicy(max_attempts=3, initial_ms=100, max_ms=1000, multiplier=2.0, jitter=0.0)


def _step(name: str, compensate: str | None) -> StepSpec:
    return StepSpec(name=name, capability="c", handler=name, compensate=compensate)


def test_retryable_failure_retries_with_backoff_until_budget_is_spent() -> None:
    delays = [
        after_failure(POLICY, counted_attempts=n, outcome=Outcome.failed, retryable=True, retry_after_ms=None, rand=0.5)
        for n in (1, 2)
    ]
    assert delays == [Retry(100), Retry(200)]
    assert isinstance(
        after_failure(
            POLICY, counted_attempts=3, outcome=Outcome.failed, retryable=True, retry_after_ms=None, rand=0.5
        ),
        GiveUp,
    )


def test_non_retryable_failure_gives_up_at_once() -> None:
    decision = after_failure(
        POLICY, counted_attempts=1, outcome=Outcome.failed, retryable=False, retry_after_ms=None, rand=0.5
    )
    assert isinstance(decision, GiveUp) and "non-retryable" in decision.reason


@pytest.mark.parametrize("outcome", [Outcome.lost, Outcome.timed_out])
def test_lost_and_timed_out_attempts_use_up_the_budget(outcome: Outcome) -> None:
    assert outcome.counts
    assert isinstance(
        after_failure(POLICY, counted_attempts=3, outcome=outcome, retryable=True, retry_after_ms=None, rand=0.5),
        GiveUp,
    )


def test_deferral_is_retried_without_limit_and_not_counted() -> None:
    assert not Outcome.deferred.counts
    decision = after_failure(
        POLICY, counted_attempts=99, outcome=Outcome.deferred, retryable=True, retry_after_ms=None, rand=0.5
    )
    assert decision == Retry(DEFER_DELAY_MS)


def test_retry_after_from_the_handler_lengthens_the_pause() -> None:
    assert after_failure(
        POLICY, counted_attempts=1, outcome=Outcome.failed, retryable=True, retry_after_ms=5000, rand=0.5
    ) == Retry(5000)


def test_backoff_is_capped_and_jitter_spreads_it() -> None:
    policy = RetryPolicy(max_attempts=10, initial_ms=100, max_ms=1000, multiplier=10.0, jitter=0.5)
    assert policy.delay_ms(5, rand=0.5) == 1000
    assert policy.delay_ms(1, rand=0.0) == 50
    assert policy.delay_ms(1, rand=0.999) == pytest.approx(150, abs=1)


def test_compensation_runs_in_strict_reverse_order_skipping_steps_without_one() -> None:
    steps = [_step("a", "undo_a"), _step("b", None), _step("c", "undo_c"), _step("d", "undo_d")]
    states = [StepState.succeeded, StepState.succeeded, StepState.succeeded, StepState.failed]
    assert next_compensation(steps, states, below=3) == 2
    states[2] = StepState.compensated
    assert next_compensation(steps, states, below=2) == 0
    states[0] = StepState.compensated
    assert next_compensation(steps, states, below=0) is None


def test_steps_that_never_succeeded_are_not_compensated() -> None:
    steps = [_step("a", "undo_a"), _step("b", "undo_b")]
    assert next_compensation(steps, [StepState.failed, StepState.pending], below=1) is None


def test_a_step_whose_outcome_is_unknown_is_compensated_too() -> None:
    steps = [_step("a", "undo_a"), _step("b", "undo_b"), _step("c", "undo_c")]
    states = [StepState.succeeded, StepState.failed, StepState.pending]
    # b timed out on its last attempt: it may have charged the card, so undo it first.
    assert next_compensation(steps, states, below=2, uncertain=1) == 1
    assert next_compensation(steps, states, below=1) == 0
    # A plain failure (the handler said it did nothing) is not compensated.
    assert next_compensation(steps, states, below=2) == 0
