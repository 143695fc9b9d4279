"""Pure decisions about what a saga does next; no I/O, so the rules are unit-tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.enums import Outcome, StepState
from models.template import RetryPolicy, StepSpec

# A deferral (mutex busy, stale token) is tried again after this pause, not counted.
DEFER_DELAY_MS = 200


@dataclass(frozen=True)
class Retry:
    """The planner's decision after a failed attempt: try the step again after this delay."""

    delay_ms: int


@dataclass(frozen=True)
class GiveUp:
    """The planner's decision after a failed attempt: the step has failed for good, for this reason."""

    reason: str


def after_failure(
    policy: RetryPolicy,
    *,
    counted_attempts: int,
    outcome: Outcome,
    retryable: bool,
    retry_after_ms: int | None,
    rand: float,
) -> Retry | GiveUp:
    """Whether a failed attempt is tried again, and after how long.

    ``counted_attempts`` already includes the attempt that just failed.
    """
    if outcome is Outcome.deferred:
        return Retry(max(DEFER_DELAY_MS, retry_after_ms or 0))
    if not retryable:
        return GiveUp("failed with a non-retryable error")
    if counted_attempts >= policy.max_attempts:
        return GiveUp(f"gave up after {counted_attempts} attempt(s)")
    return Retry(max(policy.delay_ms(counted_attempts, rand), retry_after_ms or 0))


def next_compensation(
    steps: Sequence[StepSpec], states: Sequence[StepState], below: int, *, uncertain: int | None = None
) -> int | None:
    """Index of the next step to compensate: the latest succeeded step below ``below`` that has a
    compensation. Succeeded steps without one are passed over; order is strictly reverse.

    ``uncertain`` names a failed step whose last attempt timed out or was lost: it may have done
    its work, so it is compensated too (compensations must tolerate having nothing to undo).
    """
    for index in range(min(below, len(steps)) - 1, -1, -1):
        if not steps[index].compensable:
            continue
        if states[index] is StepState.succeeded:
            return index
        if index == uncertain and states[index] is StepState.failed:
            return index
    return None


def outcome_unknown(outcome: Outcome) -> bool:
    """Whether the step may have done its work although no success was reported."""
    return outcome in (Outcome.timed_out, Outcome.lost, Outcome.cancelled)
