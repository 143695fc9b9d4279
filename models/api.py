"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from models.enums import Outcome, Phase, SagaControl, SagaState, StepState
from models.pause_api import PauseRead


class ErrorItem(BaseModel):
    """One thing wrong with a request: where (``path``: a field, ``query.x``, ``header.x``,
    ``path``, ``body``) and what; some errors add the facts a client needs (``allowed``, ...)."""

    model_config = ConfigDict(extra="allow")

    path: str = Field(
        description="Where: a body field (body.steps.0.name), query.<name>, header.<name>, path, or (root)."
    )
    message: str = Field(description="What is wrong there, in words.")


class ErrorDetail(BaseModel):
    """The ``error`` object of every API error: a stable ``code``, a readable ``message``, and
    ``details``, always a list (empty when there is nothing more to say)."""

    code: str = Field(
        description="Stable, for programs: invalid_input, malformed_json, unauthorized, forbidden, not_found, "
        "conflict, payload_too_large, unavailable, ..."
    )
    message: str = Field(description="For people: what went wrong and, where it helps, what to do.")
    details: list[ErrorItem] = Field(default_factory=list, description="One entry per failing field; may be empty.")


class ErrorBody(BaseModel):
    """Every error the API returns has this one shape."""

    error: ErrorDetail = Field(description="What went wrong.")


class SagaCreate(BaseModel):
    """A request to start a saga run from a template version, with its input and an optional idempotence key."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1, max_length=200, description="The template's name: the tenant's own or a shared one."
    )
    version: str | None = Field(
        default=None, description="The template's semantic version; null or left out: its highest version."
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "The tenant to run it for: the token's own (the default); an operator's all-tenant token may name one."
        ),
    )
    input: dict[str, Any] = Field(
        default_factory=dict, description="The saga's input; must satisfy the template's input_schema."
    )
    idempotence_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Retries with the same key return the first saga; or send an Idempotency-Key header "
            "(when both are sent they must be equal)."
        ),
    )


# The most sagas one batch submit may carry (POST /api/v1/sagas/batch).
MAX_BATCH = 1000


class SagaBatchCreate(BaseModel):
    """Sagas to submit in one request: each created, found under its idempotence key, or refused on its own."""

    model_config = ConfigDict(extra="forbid")

    sagas: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=(
            f"1 to {MAX_BATCH} sagas, each an object as the body of POST /api/v1/sagas takes one (SagaCreate: "
            "template, input, and optionally version, idempotence_key, tenant). Each entry is checked on its own: "
            "one that is not a valid SagaCreate is answered with a 422 in its result (field paths "
            "sagas.<index>.<field>) and never keeps the others from being submitted."
        ),
    )


class AttemptRead(BaseModel):
    """One attempt of one step of a saga run (forward or compensation): who ran it, its fencing token, its outcome."""

    model_config = ConfigDict(from_attributes=True)

    step_index: int = Field(description="The step's position in the template, from 0.")
    step_name: str = Field(description="The step's name.")
    phase: Phase = Field(description="forward (the step) or compensate (undoing it).")
    attempt: int = Field(description="The attempt's number within its step and phase, from 1.")
    outcome: Outcome = Field(description="What became of it; running until a worker reports.")
    worker: str | None = Field(
        description="The worker that ran it (a tenant sees its name, operators also its host); null: not started."
    )
    fencing_token: int | None = Field(
        description="The fencing token it held under the step's mutex scope; null: the step has none."
    )
    error: str | None = Field(description="Why it failed; null: it did not.")
    dispatched_at: datetime = Field(description="When it was sent to its queue.")
    started_at: datetime | None = Field(description="When a worker started it; null: not yet.")
    finished_at: datetime | None = Field(description="When it ended; null: not yet.")

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class StepRead(BaseModel):
    """One step run of a saga run: its state, its attempts and compensation attempts, its last error."""

    model_config = ConfigDict(from_attributes=True)

    index: int = Field(description="The step's position in the template, from 0.")
    name: str = Field(description="The step's name.")
    state: StepState = Field(description="Where the step stands, forward and through its compensation.")
    attempts: int = Field(description="Forward attempts made so far.")
    compensation_attempts: int = Field(description="Compensation attempts made so far.")
    error: str | None = Field(description="The last error; null: none.")
    started_at: datetime | None = Field(description="When its first attempt started; null: not yet.")
    finished_at: datetime | None = Field(description="When it reached a final state; null: not yet.")


class SagaSummary(BaseModel):
    """A saga run as lists show it: template, state, idempotence key, timestamps and SLA standing."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The saga run's id.")
    tenant: str = Field(description='The tenant the saga runs for ("*": an operator\'s saga of no tenant).')
    template_name: str = Field(description="The template it runs.")
    template_version: str = Field(description="The template version it runs.")
    state: SagaState = Field(description="Where it stands: running, compensating, or a final state.")
    idempotence_key: str | None = Field(description="The idempotence key it was submitted with; null: none.")
    error: str | None = Field(description="Why it failed (what made it compensate); null: it did not.")
    created_at: datetime = Field(description="When it was submitted.")
    updated_at: datetime = Field(description="When it last changed.")
    finished_at: datetime | None = Field(description="When it reached a final state; null: not yet.")
    sla_warned_at: datetime | None = Field(default=None, description="When its SLA warning fired; null: not yet.")
    sla_breached_at: datetime | None = Field(default=None, description="When its SLA target passed; null: not yet.")
    sla_breach_count: int = Field(default=0, description="How many SLA breach and escalation steps have fired.")
    paused_at: datetime | None = Field(
        default=None, description="Since when an operator has paused it (nothing new is dispatched); null: not paused."
    )
    paused_ms: int = Field(
        default=0,
        description="How long its clocks stood still in all, under its own pauses and those of its template or a "
        "step's capability: its deadline and SLA are later by as much.",
    )
    held_by: str | None = Field(
        default=None,
        description="The pause of its template or of a step's capability that holds its next dispatch, as "
        "kind:tenant:name (e.g. capability:*:payments); null: none. Its clocks stand still meanwhile.",
    )
    held_at: datetime | None = Field(default=None, description="Since when that pause holds it; null: none does.")
    trace_id: str | None = Field(
        default=None,
        description="Its OpenTelemetry trace id (32 hex digits): one trace from the submit to its end; null: the "
        "orchestrator did not trace its submit.",
    )


class SagaAuditRead(BaseModel):
    """One operator's control of a saga: who did what, when and why."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime = Field(description="When it was done.")
    actor: str = Field(description="Who did it, as user:<id> or agent:<id>.")
    action: SagaControl = Field(description="What was done.")
    reason: str = Field(description="Why, as the actor said.")
    detail: dict[str, Any] = Field(
        description="The saga's state before (from) and after (to), and the steps it stopped."
    )


class SagaControlBody(BaseModel):
    """Why an operator acts on a saga: kept in its audit trail and in its error."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why; shown on the saga and in its audit trail.")


class RerunStep(BaseModel):
    """What a rerun does with one step of the saga."""

    name: str = Field(description="The step.")
    runs: bool = Field(description="Whether it runs again (its side effect again); false: it keeps its result.")
    earlier_keys: bool = Field(
        default=False,
        description=(
            "Whether it runs again under its earlier idempotence keys (its earlier effect may stand: its undo gave up, "
            "or its outcome is unknown); false: under keys of the rerun's own."
        ),
    )
    why: str = Field(description="Why, and what to know (an idempotence key that stays the same).")


class SagaRerun(BaseModel):
    """Run a saga that ended without completing again, from a step, its input patched if need be."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in the saga's audit trail.")
    from_step: str | None = Field(
        default=None,
        max_length=200,
        description="The step to run again from (and every step after it); null: the first that did not succeed.",
    )
    input_patch: dict[str, Any] | None = Field(
        default=None, description="A JSON merge patch (RFC 7386) applied to the saga's input; null removes a key."
    )
    dry_run: bool = Field(default=False, description="Only answer the plan: which steps keep their result, which run.")


class SagaRerunRead(BaseModel):
    """A rerun's plan, and the saga as it reads after it (unchanged on a dry run)."""

    dry_run: bool = Field(description="Whether nothing was done.")
    start: str = Field(description="The first step that runs again.")
    input: dict[str, Any] = Field(description="The input the rerun runs with.")
    steps: list[RerunStep] = Field(description="Every step, in order, and what the rerun does with it.")
    saga: SagaRead = Field(description="The saga as it reads now.")


class SagaFilter(BaseModel):
    """Which sagas a bulk control applies to: all of the conditions given (at least one)."""

    # At least one condition: a bulk control of every saga by an empty filter is refused (422).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Left out, not null, when not wanted (SkipJsonSchema: the OpenAPI does not offer null).
    state: SagaState | SkipJsonSchema[None] = Field(default=None, description="Only sagas in this state.")
    template: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=200, description="Only sagas of this template (by name)."
    )
    tenant: str | SkipJsonSchema[None] = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Only this tenant's sagas (an all-tenant token only; else its own).",
    )
    created_after: datetime | SkipJsonSchema[None] = Field(
        default=None, description="Only sagas submitted at or after this time."
    )
    created_before: datetime | SkipJsonSchema[None] = Field(
        default=None, description="Only sagas submitted before this time."
    )


class SagaBulkControl(BaseModel):
    """One control applied to every saga a filter matches, each in a transaction of its own."""

    model_config = ConfigDict(extra="forbid")

    action: SagaControl = Field(description="What to do to each saga.")
    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in each saga's audit trail.")
    filter: SagaFilter = Field(description="Which sagas.")
    dry_run: bool = Field(
        default=True, description="Only count what matches (the default): send false, with expect, to act."
    )
    expect: int | None = Field(
        default=None,
        ge=0,
        description=(
            "To act: the count a dry run answered. If the filter matches another number now, nothing is done "
            "(409), so that an operator acts on what was shown."
        ),
    )
    limit: int = Field(default=1000, ge=1, le=1000, description="The most sagas one request acts on.")


class SagaBulkResult(BaseModel):
    """What a bulk control did to one saga."""

    id: str = Field(description="The saga's id.")
    status: int = Field(description="200 done; 409 it did not apply to the saga as it stood (see error).")
    error: str | None = Field(default=None, description="Why it did not apply; null: done.")


class SagaBulkRead(BaseModel):
    """The answer to a bulk control: how many sagas matched and, unless a dry run, what became of each."""

    matched: int = Field(description="How many sagas the filter matches now (at most limit + 1 are counted).")
    dry_run: bool = Field(description="Whether nothing was done.")
    sample: list[str] = Field(description="The ids of the first matching sagas (up to 20), oldest first.")
    results: list[SagaBulkResult] = Field(default_factory=list, description="Each saga acted on, oldest first.")
    done: int = Field(default=0, description="How many the control was applied to.")
    refused: int = Field(default=0, description="How many it did not apply to.")


class SagaItemRead(BaseModel):
    """A work item a saga opened: one a step waits on, or a remediation."""

    id: str = Field(description="The work item's id.")
    type: str = Field(description="Its work-item type.")
    title: str = Field(description="Its title.")
    tenant: str = Field(description="The tenant it belongs to.")
    status: str = Field(description="Its status in its lifecycle.")
    step: str | None = Field(description="The step that waits on it; null: a remediation item.")
    phase: str | None = Field(description="forward or compensate; null: a remediation item.")
    attempt: int | None = Field(description="The step attempt it belongs to; null: a remediation item.")
    holder: str | None = Field(description="Who has claimed it, as user:<id> or agent:<id>; null: nobody.")
    lease_expires_at: datetime | None = Field(description="When the holder's lease lapses; null: no lease.")
    created_at: datetime = Field(description="When it was opened.")
    sla_due_at: datetime | None = Field(default=None, description="When the item's SLA target passes, if it has one.")
    sla_breached_at: datetime | None = Field(default=None, description="When its SLA target passed; null: not yet.")
    sla_breach_count: int = Field(default=0, description="How many SLA breach and escalation steps have fired.")


class SagaRead(SagaSummary):
    """A saga run in full: its input, the step results, every step run and attempt, its work items and SLA events."""

    input: dict[str, Any] = Field(description="The input it was submitted with.")
    results: dict[str, Any] = Field(description="Each finished step's result, by step name.")
    steps: list[StepRead] = Field(description="Every step of the template, in order.")
    attempts: list[AttemptRead] = Field(description="Every attempt of every step, forward and compensation, in order.")
    work_items: list[SagaItemRead] = Field(
        default_factory=list, description="The work items it opened (its steps' and remediations)."
    )
    sla: dict[str, Any] | None = Field(default=None, description="The template's SLA for the saga, if any.")
    sla_events: list[dict[str, Any]] = Field(
        default_factory=list, description="Each SLA warning, breach and escalation step, and what it did."
    )
    audit: list[SagaAuditRead] = Field(
        default_factory=list, description="Each operator's control of the saga (cancel, terminate), oldest first."
    )
    hold: PauseRead | None = Field(
        default=None, description="The pause that held_by names (who paused it, when, why); null: none holds it."
    )


class SagaBatchResult(BaseModel):
    """What became of one entry of a batch submit: its saga (started now or before), or why it was refused."""

    index: int = Field(description="The entry's position in the request's sagas, from 0.")
    status: int = Field(
        description=(
            "What a single submit of the entry would have answered: 202 started now; 200 already started under "
            "this idempotence key with the same template and input (that saga); 403 (a tenant the token may not "
            "submit for), 404 (no such template or version), 409 (the key names a saga of another template or "
            "input, or an earlier entry of the batch with another input) or 422 (the entry is not valid): refused, "
            "nothing was written for it."
        )
    )
    saga: SagaSummary | None = Field(
        description="The saga (its summary: GET /api/v1/sagas/{id} has the timeline); null: the entry was refused."
    )
    error: ErrorDetail | None = Field(
        description="Why the entry was refused, as a single submit's error; null: it was not."
    )


class SagaBatchRead(BaseModel):
    """The answer to a batch submit: one result per entry, in the order they were sent, and how many of each kind."""

    results: list[SagaBatchResult] = Field(description="One per entry of the request, in its order.")
    created: int = Field(description="How many entries started a saga now (status 202).")
    existing: int = Field(description="How many were answered with a saga started before under their key (200).")
    refused: int = Field(description="How many were refused (4xx); nothing was written for them.")


class SagaPage(BaseModel):
    """One page of saga runs, with the cursor of the next page."""

    items: list[SagaSummary] = Field(description="The saga runs of this page, newest first.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class TemplateRead(BaseModel):
    """One registered version of a saga template, with the spec it was registered with."""

    tenant: str = Field(description='The tenant that owns it; "*": shared, runnable by every tenant.')
    name: str = Field(description="The template's name.")
    version: str = Field(description="Its semantic version.")
    spec: dict[str, Any] = Field(description="The template as registered (the TemplateSpec, defaults filled in).")
    created_at: datetime = Field(description="When this version was registered.")
