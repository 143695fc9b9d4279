"""The worker runtime: the ``@step`` contract, dedup, mutex leases, the Celery adapter."""

from __future__ import annotations

from workers.context import StepContext
from workers.errors import StepFailed, TransientError, WorkyardError
from workers.hooks import Hooks
from workers.registry import step

__all__ = ["Hooks", "StepContext", "StepFailed", "TransientError", "WorkyardError", "step"]
