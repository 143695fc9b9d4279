"""Retries: a durable ``dispatch`` timer after the backoff, until the budget is spent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from orchestrator.sagas.planner import DEFER_DELAY_MS
from tests.unit.sagas.harness import T0, Scenario, handler, retry, template


def one(max_attempts: int = 3, initial_ms: int = 100, max_ms: int = 10_000, **extra: object) -> Scenario:
    policy = retry(max_attempts, initial_ms, max_ms) | dict(extra)
    return Scenario(template(handler("first"), handler("a", retry=policy))).start()


def at_step_a(s: Scenario) -> Scenario:
    s.succeed(0)
    return s


def test_a_retryable_failure_arms_a_dispatch_timer_after_the_backoff() -> None:
    s = at_step_a(one())
    s.advance(10)
    s.report(1, Outcome.failed)
    assert s.step_states()[1] is StepState.retry_wait
    assert s.last_sent == []  # nothing goes out before the pause is over
    timer = s.timers["dispatch:s-1:1:forward:2"]
    assert timer.kind == TimerKind.dispatch and timer.saga_id == "s-1"
    assert timer.payload == {"index": 1, "phase": "forward", "attempt": 2}
    assert timer.due_at == T0 + timedelta(milliseconds=10 + 100)


def test_the_retry_timer_dispatches_the_next_attempt() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed)
    s.fire_retry(1)
    assert s.moves()[-1] == ("a", "forward", 2)
    assert s.step_states()[1] is StepState.running
    assert s.saga.steps[1].current_attempt == 2 and s.saga.steps[1].attempts == 1
    assert s.timers == {}


def test_a_retry_that_succeeds_moves_on() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed)
    s.fire_retry(1)
    s.succeed(1)
    assert s.state() is SagaState.completed
    assert [a.outcome for a in s.attempts_of(1)] == [Outcome.failed, Outcome.succeeded]


@pytest.mark.parametrize(("failures", "delay_ms"), [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000)])
def test_the_backoff_doubles_up_to_its_cap(failures: int, delay_ms: int) -> None:
    s = at_step_a(one(max_attempts=10, max_ms=1000))
    for n in range(failures):
        if n:
            s.fire_retry(1)
        s.report(1, Outcome.failed)
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=delay_ms)


@pytest.mark.parametrize(("rand", "delay_ms"), [(0.0, 50), (0.5, 100), (0.75, 125)])
def test_jitter_spreads_the_backoff(rand: float, delay_ms: int) -> None:
    s = at_step_a(one(jitter=0.5))
    s.rand = rand
    s.report(1, Outcome.failed)
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=delay_ms)


def test_the_step_gives_up_after_max_attempts() -> None:
    s = at_step_a(one(max_attempts=3))
    for n in range(3):
        if n:
            s.fire_retry(1)
        s.report(1, Outcome.failed, error="card declined")
    step = s.saga.steps[1]
    assert step.state is StepState.failed and step.attempts == 3
    assert step.error == "Boom: card declined"
    assert s.saga.error == "step 'a' gave up after 3 attempt(s): Boom: card declined"
    assert s.moves()[-1] == ("first", "compensate", 1)
    assert not [t for t in s.timers.values() if t.kind == TimerKind.dispatch]


def test_max_attempts_one_gives_up_on_the_first_failure() -> None:
    s = at_step_a(one(max_attempts=1))
    s.report(1, Outcome.failed)
    assert s.step_states() == [StepState.compensating, StepState.failed]


def test_a_non_retryable_failure_gives_up_at_once() -> None:
    s = at_step_a(one(max_attempts=5))
    s.report(1, Outcome.failed, retryable=False, error="no such account")
    step = s.saga.steps[1]
    assert step.state is StepState.failed and step.attempts == 1
    assert s.saga.error == "step 'a' failed with a non-retryable error: Boom: no such account"
    assert s.timers == {}
    assert s.state() is SagaState.compensating


def test_a_deferral_is_retried_after_a_short_pause_and_not_counted() -> None:
    s = at_step_a(one(max_attempts=2))
    s.report(1, Outcome.deferred)
    step = s.saga.steps[1]
    assert step.state is StepState.retry_wait and step.attempts == 0 and step.current_attempt == 1
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=DEFER_DELAY_MS)


def test_deferrals_never_use_up_the_budget() -> None:
    s = at_step_a(one(max_attempts=2))
    for _ in range(5):
        s.report(1, Outcome.deferred)
        s.fire_retry(1)
    assert s.saga.steps[1].attempts == 0 and s.saga.steps[1].current_attempt == 6
    s.report(1, Outcome.failed)
    assert s.step_states()[1] is StepState.retry_wait  # the first counted failure of two


def test_a_deferral_waits_as_long_as_the_worker_asks() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.deferred, retry_after_ms=1500)
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=1500)


@pytest.mark.parametrize(("retry_after_ms", "delay_ms"), [(5000, 5000), (10, 100), (None, 100)])
def test_retry_after_lengthens_the_backoff_but_never_shortens_it(retry_after_ms: int | None, delay_ms: int) -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed, retry_after_ms=retry_after_ms)
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=delay_ms)


def test_retry_after_does_not_extend_the_budget() -> None:
    s = at_step_a(one(max_attempts=1))
    s.report(1, Outcome.failed, retry_after_ms=5000)
    assert s.step_states()[1] is StepState.failed


def test_a_retry_timer_fired_twice_dispatches_once() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed)
    (timer,) = s.timers.values()
    s.fire_retry(1)
    s.fire_timer(timer)  # redelivered by a second timer loop
    assert s.moves().count(("a", "forward", 2)) == 1
    assert s.last_sent == []


def test_a_retry_timer_for_an_earlier_attempt_does_nothing() -> None:
    s = at_step_a(one(max_attempts=5))
    s.report(1, Outcome.failed)
    (first,) = s.timers.values()
    s.fire_retry(1)
    s.report(1, Outcome.failed)
    s.fire_retry(1)
    s.fire_timer(first)  # the timer of attempt 2, long after attempt 3 went out
    assert [m for m in s.moves() if m[0] == "a"] == [("a", "forward", 1), ("a", "forward", 2), ("a", "forward", 3)]
    assert s.step_states()[1] is StepState.running


@pytest.mark.parametrize("outcome", [Outcome.lost, Outcome.failed])
def test_a_lost_attempt_counts_like_a_failure(outcome: Outcome) -> None:
    s = at_step_a(one(max_attempts=2))
    s.report(1, outcome)
    assert s.saga.steps[1].attempts == 1 and s.step_states()[1] is StepState.retry_wait
    s.fire_retry(1)
    s.report(1, outcome)
    # Given up: a lost attempt may have done its work, so the step is undone too (see unknown outcomes).
    assert s.saga.steps[1].attempts == 2 and s.state() is SagaState.compensating
    assert s.saga.error is not None and s.saga.error.startswith("step 'a' gave up after 2 attempt(s)")
    assert not [t for t in s.timers.values() if t.kind == TimerKind.dispatch]


def test_a_timed_out_attempt_counts_and_is_retried() -> None:
    s = at_step_a(one(max_attempts=2))
    s.time_out(1)
    assert s.saga.steps[1].attempts == 1 and s.step_states()[1] is StepState.retry_wait
    s.fire_retry(1)
    s.time_out(1)
    assert s.saga.steps[1].attempts == 2 and s.state() is SagaState.compensating
    assert "gave up after 2 attempt(s)" in (s.saga.error or "")


def test_a_report_on_the_failed_attempt_while_waiting_to_retry_is_dropped() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed)
    assert s.report(1, attempt=1) is False
    assert s.step_states()[1] is StepState.retry_wait and "a" not in s.saga.results


def test_the_retry_policy_is_per_step() -> None:
    s = Scenario(template(handler("a", retry=retry(1)), handler("b", retry=retry(4, 30)))).start()
    s.succeed(0)
    s.report(1, Outcome.failed)
    s.fire_retry(1)
    s.report(1, Outcome.failed)
    (timer,) = s.timers.values()
    assert timer.due_at - s.now == timedelta(milliseconds=60)
    s2 = Scenario(template(handler("a", retry=retry(1)), handler("b"))).start()
    s2.report(0, Outcome.failed)
    assert s2.step_states()[0] is StepState.failed and s2.state() is SagaState.compensated


def test_the_retried_attempt_is_dispatched_like_the_first() -> None:
    s = at_step_a(one())
    s.report(1, Outcome.failed)
    s.fire_retry(1)
    first, second = s.dispatches()[1:]
    assert second.attempt == 2 and second.dispatched_at == s.now
    assert (first.idempotence_key, first.results) == (second.idempotence_key, second.results)
    assert s.latest(1).attempt == 2 and s.latest(1).outcome is Outcome.running
    assert s.attempt(1, Phase.forward, 1) is not None


@pytest.mark.parametrize("stopper", ["saga_deadline:s-1", "saga_sla_breach:s-1:breach"])
def test_a_retry_timer_fired_after_the_saga_gave_up_on_the_step_does_nothing(stopper: str) -> None:
    # The timer loop loads a batch of due timers and then fires them in one transaction: the
    # deadline (or an SLA breach that cancels) cancels the step's retry timer, but the timer
    # was loaded already and fires right after it.
    s = Scenario(
        template(
            handler("first"),
            handler("a", undo=False, retry=retry(3, 1000)),
            deadline_ms=500,
            sla={"target_ms": 500, "breach_action": "cancel"},
        )
    ).start()
    s.succeed(0)
    s.report(1, Outcome.failed)
    (waiting,) = [t for t in s.timers.values() if t.kind == TimerKind.dispatch]
    s.fire(stopper)
    assert s.step_states() == [StepState.compensating, StepState.failed]
    s.fire_timer(waiting)
    assert s.step_states() == [StepState.compensating, StepState.failed]
    assert s.moves() == [("first", "forward", 1), ("a", "forward", 1), ("first", "compensate", 1)]
