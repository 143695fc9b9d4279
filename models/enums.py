"""Statuses, as string enums so they read the same in the database, the API and the CLI."""

from __future__ import annotations

from enum import StrEnum


class SagaState(StrEnum):
    """Where a saga run stands: running forward, compensating, or one of its terminal states."""

    running = "running"
    compensating = "compensating"
    completed = "completed"
    compensated = "compensated"
    compensation_failed = "compensation_failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_SAGA_STATES


TERMINAL_SAGA_STATES = frozenset({SagaState.completed, SagaState.compensated, SagaState.compensation_failed})


class StepState(StrEnum):
    """Where one step run stands, forward (pending to succeeded or failed) and through its compensation."""

    pending = "pending"
    running = "running"
    retry_wait = "retry_wait"
    succeeded = "succeeded"
    failed = "failed"
    compensating = "compensating"
    compensated = "compensated"
    compensation_failed = "compensation_failed"


class Phase(StrEnum):
    """Which way a step runs: forward (its handler) or compensate (its undo)."""

    forward = "forward"
    compensate = "compensate"


class Outcome(StrEnum):
    """What became of one attempt of one step."""

    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    # The worker running it died (or the dispatch vanished): counts as an attempt.
    lost = "lost"
    # Past its deadline with no report: counts as an attempt.
    timed_out = "timed_out"
    # Could not start yet (mutex busy, stale fencing token): re-dispatched, not counted.
    deferred = "deferred"

    @property
    def counts(self) -> bool:
        """Whether this outcome uses up one of the step's attempts."""
        return self is not Outcome.deferred
