"""Messages between the orchestrator and the workers.

A dispatch goes to ``cap.<capability>`` as the one argument of the Celery task ``workyard.step``;
a report comes back to ``workyard.orchestrator`` as a plain JSON message. Fields may be added;
none may change meaning, because messages already queued must still be understood.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.enums import Outcome, Phase


class StepDispatch(BaseModel):
    """Run one attempt of one step (forward or compensating) of one saga."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    saga_id: str
    template: str
    version: str
    step_index: int = Field(ge=0)
    step: str
    handler: str
    capability: str
    phase: Phase
    attempt: int = Field(ge=1)
    idempotence_key: str
    mutex_scope: str | None = None
    fencing_token: int | None = None
    input: dict[str, Any]
    results: dict[str, Any] = Field(default_factory=dict)
    timeout_ms: int | None = None
    dispatched_at: datetime
    # Set for one member of a fan-out step: its index, and its element of the step's list.
    member: int | None = Field(default=None, ge=0)
    each: Any = None
    # Past this the orchestrator has timed the attempt out and moved on: a worker drops it.
    # (Checked by workyard, not Celery's ``expires``, which costs ~1 ms per task in the worker.)
    expires_at: datetime | None = None
    # The tenant the saga runs for: the worker's log lines say it.
    tenant: str | None = None
    # W3C trace context (``00-<trace id>-<span id>-<flags>``): the span that wrote this dispatch, the
    # parent of the worker's; and for a compensation, the forward attempt's span it undoes (a
    # link). None when the orchestrator does not trace.
    traceparent: str | None = Field(default=None, max_length=55)
    undoes: str | None = Field(default=None, max_length=55)


class ErrorInfo(BaseModel):
    """Why an attempt failed or was deferred: the error's type name and message."""

    type: str
    message: str


class StepReport(BaseModel):
    """What became of one attempt, sent by the worker that handled its dispatch."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["step_report"] = "step_report"
    v: Literal[1] = 1
    saga_id: str
    step_index: int = Field(ge=0)
    phase: Phase
    attempt: int = Field(ge=1)
    outcome: Literal[Outcome.succeeded, Outcome.failed, Outcome.lost, Outcome.deferred]
    retryable: bool = True
    retry_after_ms: int | None = Field(default=None, ge=0)
    error: ErrorInfo | None = None
    result: Any = None
    worker: str | None = None
    fencing_token: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Set when the report is one member's of a fan-out step (the member's index).
    member: int | None = Field(default=None, ge=0)
    # W3C trace context of the span that ran the attempt (the worker's, or the request that ended
    # a work item): the coordinator's span applying the report continues the saga's trace from it.
    traceparent: str | None = Field(default=None, max_length=55)


class DeadLetterReport(BaseModel):
    """A worker got a message it cannot act on; the orchestrator keeps it with the reason."""

    kind: Literal["dead_letter"] = "dead_letter"
    source: str
    reason: str
    body: str


OrchestratorMessage = Annotated[StepReport | DeadLetterReport, Field(discriminator="kind")]
