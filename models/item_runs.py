"""The run document of a work item (the spec's §6 "audit and evidence"), and the compensate request.

Shaped exactly as the spec writes it (``runId``, ``workItemId``, ``steps``, ``compensationStatus``),
so its field names are the spec's camelCase; workyard's own additions say what run it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CompensationStatus = Literal["none", "running", "completed", "failed"]


class RunLog(BaseModel):
    """One attempt of a step: which way it ran, how it ended, who ran it."""

    at: datetime = Field(description="When the attempt was dispatched.")
    phase: str = Field(description="forward (the step) or compensate (its undo).")
    attempt: int = Field(description="The attempt's number within its phase, from 1.")
    outcome: str = Field(description="running, succeeded, failed, lost, timed_out, deferred or cancelled.")
    worker: str | None = Field(default=None, description="The worker that reported it; null: none yet.")
    error: str | None = Field(default=None, description="Why it failed; null: it did not.")
    endedAt: datetime | None = Field(default=None, description="When it ended; null: it has not.")


class RunStep(BaseModel):
    """One step of a run, as the spec's run document lists it."""

    stepId: str = Field(description="The step's name in its saga template.")
    status: str = Field(
        description="pending, running, retry_wait, succeeded, failed, compensating, compensated or compensation_failed."
    )
    startedAt: datetime | None = Field(
        default=None, description="When its first attempt was dispatched; null: not yet."
    )
    endedAt: datetime | None = Field(default=None, description="When it last ended; null: it has not.")
    logs: list[RunLog] = Field(description="Its attempts, in order.")


class RunDocument(BaseModel):
    """A saga run tied to a work item: its own saga (the one waiting on it), or a run of its compensation plan."""

    runId: str = Field(description="The saga run's id (GET /api/v1/sagas/{id} shows it all).")
    workItemId: str = Field(description="The work item.")
    kind: Literal["saga", "compensation"] = Field(
        description="saga: the saga a step of which the item decides; compensation: a run of the item's plan."
    )
    template: str = Field(description="The saga template it runs.")
    state: str = Field(description="The saga run's state (running, compensating, completed, compensated, ...).")
    steps: list[RunStep] = Field(
        description="Its steps, in template order (a compensation run's: in the order they run)."
    )
    compensationStatus: CompensationStatus = Field(
        description="For a compensation run: its own; for the item's saga: the saga's own compensation, or the "
        "item's last compensation run. none: nothing was compensated."
    )
    createdAt: datetime = Field(description="When the run started.")
    endedAt: datetime | None = Field(default=None, description="When it ended; null: it has not.")
    requestedBy: str | None = Field(default=None, description="Who asked for a compensation run; null for a saga.")


class CompensateRequest(BaseModel):
    """A request to run the item's compensation plan."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000, description="Why, kept in the history; null: none.")
    failed_step: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="For a failed item: the step that failed (failure_of actions for it run); null: the saga step "
        "the item answered, if any (any_failure and * actions run either way).",
    )
