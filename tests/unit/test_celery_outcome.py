"""How a delivery's outcome ends the step task for Celery (and so for Flower): pure mapping."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from celery.exceptions import Retry

from models.enums import Outcome, Phase
from models.messages import DeadLetterReport, ErrorInfo, StepReport
from workers.celery.outcome import AttemptDeferred, AttemptFailed, finish
from workers.runtime import Delivery


def report(outcome: Outcome, *, error: tuple[str, str] | None = None, retryable: bool = True) -> StepReport:
    return StepReport(
        saga_id="s",
        step_index=0,
        phase=Phase.forward,
        attempt=1,
        outcome=outcome,
        retryable=retryable,
        error=ErrorInfo(type=error[0], message=error[1]) if error else None,
        result={"charge_id": "c-1"} if outcome is Outcome.succeeded else None,
        worker="payments-1@host",
        finished_at=datetime.now(UTC),
    )


def test_a_success_returns_the_handlers_result() -> None:
    assert finish(Delivery.of(report(Outcome.succeeded))) == {"charge_id": "c-1"}


def test_a_failure_raises_the_reported_error_chained_to_the_handlers() -> None:
    cause = ValueError("declined")
    failed = report(Outcome.failed, error=("StepFailed", "card declined"), retryable=False)
    with pytest.raises(AttemptFailed) as raised:
        finish(Delivery.of(failed, cause))
    assert repr(raised.value) == "StepFailed('card declined', retryable=False)"
    assert str(raised.value) == "StepFailed: card declined (not retryable: the step is not tried again)"
    assert raised.value.__cause__ is cause


def test_a_lost_attempt_is_a_retryable_failure() -> None:
    lost = report(Outcome.lost, error=("WorkerLost", "the delivery on payments-1@host died"))
    with pytest.raises(AttemptFailed) as raised:
        finish(Delivery.of(lost))
    assert repr(raised.value) == "WorkerLost('the delivery on payments-1@host died', retryable=True)"


def test_a_deferral_is_a_retry_that_celery_does_not_send_again() -> None:
    deferred = report(Outcome.deferred, error=("MutexBusy", "mutex scope 'a' is held by another step"))
    with pytest.raises(Retry) as raised:
        finish(Delivery.of(deferred))
    assert isinstance(raised.value.exc, AttemptDeferred)
    assert repr(raised.value.exc) == "MutexBusy(\"mutex scope 'a' is held by another step\", retryable=True)"
    assert raised.value.sig is None  # nothing for Celery to publish


def test_a_dead_letter_is_a_failure_that_is_not_retried() -> None:
    letter = DeadLetterReport(source="cap.alpha", reason="malformed step dispatch: saga_id: missing", body="{}")
    with pytest.raises(AttemptFailed) as raised:
        finish(Delivery.of(letter))
    assert repr(raised.value) == "MalformedDispatch('malformed step dispatch: saga_id: missing', retryable=False)"


def test_a_dropped_delivery_says_why_it_did_nothing() -> None:
    assert finish(Delivery([], dropped="a duplicate")) == "not run: a duplicate"


@pytest.mark.parametrize("kind", [AttemptFailed, AttemptDeferred])
def test_the_errors_cross_from_a_pool_process_intact(kind: type[AttemptFailed | AttemptDeferred]) -> None:
    # Celery pickles a task's exception (and a Retry with it) from the pool process to the worker.
    error = kind("StepFailed", "card declined", retryable=True)
    again = pickle.loads(pickle.dumps(Retry("deferred", exc=error)))
    assert isinstance(again.exc, kind) and repr(again.exc) == repr(error) and str(again.exc) == str(error)
