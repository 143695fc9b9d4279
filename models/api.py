"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.enums import Outcome, Phase, SagaState, StepState


class ErrorItem(BaseModel):
    """One thing wrong with a request: where (``path``: a field, ``query.x``, ``header.x``,
    ``path``, ``body``) and what; some errors add the facts a client needs (``allowed``, ...)."""

    model_config = ConfigDict(extra="allow")

    path: str
    message: str


class ErrorDetail(BaseModel):
    """The ``error`` object of every API error: a stable ``code``, a readable ``message``, and
    ``details``, always a list (empty when there is nothing more to say)."""

    code: str
    message: str
    details: list[ErrorItem] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error the API returns has this one shape."""

    error: ErrorDetail


class SagaCreate(BaseModel):
    """A request to start a saga run from a template version, with its input and an optional idempotence key."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1, max_length=200)
    version: str | None = Field(default=None, description="Semantic version; the highest if omitted.")
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "The tenant to run it for: the token's own (the default); an operator's all-tenant token may name one."
        ),
    )
    input: dict[str, Any] = Field(default_factory=dict)
    idempotence_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Retries with the same key return the first saga; or send an Idempotency-Key header.",
    )


class AttemptRead(BaseModel):
    """One attempt of one step of a saga run (forward or compensation): who ran it, its fencing token, its outcome."""

    model_config = ConfigDict(from_attributes=True)

    step_index: int
    step_name: str
    phase: Phase
    attempt: int
    outcome: Outcome
    worker: str | None
    fencing_token: int | None
    error: str | None
    dispatched_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class StepRead(BaseModel):
    """One step run of a saga run: its state, its attempts and compensation attempts, its last error."""

    model_config = ConfigDict(from_attributes=True)

    index: int
    name: str
    state: StepState
    attempts: int
    compensation_attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class SagaSummary(BaseModel):
    """A saga run as lists show it: template, state, idempotence key, timestamps and SLA standing."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant: str = Field(description='The tenant the saga runs for ("*": an operator\'s saga of no tenant).')
    template_name: str
    template_version: str
    state: SagaState
    idempotence_key: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    sla_warned_at: datetime | None = None
    sla_breached_at: datetime | None = None
    sla_breach_count: int = 0


class SagaItemRead(BaseModel):
    """A work item a saga opened: one a step waits on, or a remediation."""

    id: str
    type: str
    title: str
    tenant: str
    status: str
    step: str | None
    phase: str | None
    attempt: int | None
    holder: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    sla_due_at: datetime | None = Field(default=None, description="When the item's SLA target passes, if it has one.")
    sla_breached_at: datetime | None = None
    sla_breach_count: int = 0


class SagaRead(SagaSummary):
    """A saga run in full: its input, the step results, every step run and attempt, its work items and SLA events."""

    input: dict[str, Any]
    results: dict[str, Any]
    steps: list[StepRead]
    attempts: list[AttemptRead]
    work_items: list[SagaItemRead] = Field(default_factory=list)
    sla: dict[str, Any] | None = Field(default=None, description="The template's SLA for the saga, if any.")
    sla_events: list[dict[str, Any]] = Field(
        default_factory=list, description="Each SLA warning, breach and escalation step, and what it did."
    )


class SagaPage(BaseModel):
    """One page of saga runs, with the cursor of the next page."""

    items: list[SagaSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class TemplateRead(BaseModel):
    """One registered version of a saga template, with the spec it was registered with."""

    tenant: str = Field(description='The tenant that owns it; "*": shared, runnable by every tenant.')
    name: str
    version: str
    spec: dict[str, Any]
    created_at: datetime
