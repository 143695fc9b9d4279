"""Errors a handler raises to tell workyard what to do next."""

from __future__ import annotations

from models.errors import WorkyardError

__all__ = ["StepFailed", "TransientError", "WorkyardError"]


class StepFailed(WorkyardError):
    """The step did not do its work.

    ``retryable=False`` ends the step now (the saga compensates); otherwise the step's retry
    policy decides, and ``retry_after`` (seconds) asks for at least that long a pause.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        # Per instance: the handler decides (the class default of the root is "not retryable").
        self.retryable = retryable
        self.retry_after = retry_after


class TransientError(WorkyardError):
    """A blip worth retrying at once, inside the same attempt (a dropped connection, a 503)."""

    retryable = True
