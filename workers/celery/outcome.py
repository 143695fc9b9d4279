"""How a step attempt ends for Celery, so that Flower shows what the orchestrator was told.

The report to the orchestrator, not Celery's task state, is what moves a saga. But Flower (and
anything else reading Celery's events) learns an attempt's end only from how the task returned:
a task that returns is SUCCESS. So, once its report is on its way, the step task ends as the
attempt did (:func:`finish`):

- succeeded: it returns the handler's result (SUCCESS, with the result);
- failed or lost: it raises :class:`AttemptFailed` (FAILURE), which reads as the error the
  orchestrator was told, e.g. ``StepFailed('card declined', retryable=False)``, chained to the
  handler's own exception so that the traceback Flower shows is the handler's;
- deferred (its mutex held, or a stale fencing token): it raises Celery's ``Retry`` (RETRY).

Why a retryable failure is FAILURE, not RETRY: whether it is tried again is the orchestrator's
decision, on counts the worker does not have (attempts that count, the policy's budget, a saga
that moved on), and the next attempt is another task, with an id of its own. A deferral is RETRY:
the orchestrator always dispatches a deferred step again, and does not count it.

Why raising is safe (celery.app.trace and celery.worker.request, Celery 5.7): the task raises
after its report went out, so nothing is lost with the exception. An exception the task declares
in ``throws`` is logged at INFO without a traceback (the runtime logged the handler's already).
The message is then acknowledged as a success is: ``acks_late`` tasks ack a failure when
``acks_on_failure_or_timeout`` is on (Celery's default, which the step task sets explicitly), and
a raised ``Retry`` is acknowledged in ``Request.on_retry`` without anything published (only
``Task.retry()`` sends a new message, and the task never calls it; no ``autoretry_for``). No
result is stored: there is no result backend (``result_backend=None``), and the task ignores its
result without ``store_errors_even_if_ignored``. Sending a ``task-failed`` event by hand while
returning normally would not do: Celery would then send ``task-succeeded`` as well, and Celery's
state (Flower's) lets SUCCESS take precedence over FAILURE.

A dropped delivery (a duplicate of an attempt running elsewhere, or past its deadline) returns a
note saying so: it did nothing, and nothing about the attempt is decided by it.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import Retry

from models.enums import Outcome
from models.messages import DeadLetterReport
from workers.runtime import Delivery


class AttemptEnded(Exception):
    """An attempt that did not succeed, as Celery's task events carry it: its ``repr`` (what
    Flower shows) is the error the orchestrator was told, its type, message and whether it may
    be retried."""

    def __init__(self, error_type: str, message: str, retryable: bool):
        # All three in args: Celery pickles the exception from a pool process to the worker.
        super().__init__(error_type, message, retryable)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"{self.error_type}({self.message!r}, retryable={self.retryable})"

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class AttemptFailed(AttemptEnded):
    """The attempt failed (or was lost); the orchestrator decides what follows."""

    def __str__(self) -> str:
        then = (
            "retryable: the orchestrator decides whether to try the step again"
            if self.retryable
            else "not retryable: the step is not tried again"
        )
        return f"{super().__str__()} ({then})"


class AttemptDeferred(AttemptEnded):
    """The attempt did not run (its mutex was held, or its fencing token is stale); the
    orchestrator dispatches the step again."""

    def __str__(self) -> str:
        return f"{super().__str__()} (deferred: the orchestrator dispatches the step again)"


def finish(delivery: Delivery) -> Any:
    """End the step task as ``delivery``'s attempt ended (see the module): return what a
    success returns, or raise."""
    outcome = delivery.outcome
    if outcome is None:
        return f"not run: {delivery.dropped or 'dropped'}"
    if isinstance(outcome, DeadLetterReport):
        raise AttemptFailed("MalformedDispatch", outcome.reason, retryable=False)
    if outcome.outcome is Outcome.succeeded:
        return outcome.result
    error_type, message = (outcome.error.type, outcome.error.message) if outcome.error else ("Failed", "-")
    if outcome.outcome is Outcome.deferred:
        deferred = AttemptDeferred(error_type, message, retryable=True)
        raise Retry(str(deferred), exc=deferred)
    raise AttemptFailed(error_type, message, retryable=outcome.retryable) from delivery.error
