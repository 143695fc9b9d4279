"""``/api/v1/sagas``: submit sagas (idempotently) and read their timelines."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import ValidationError

from models.api import (
    ErrorDetail,
    SagaBatchCreate,
    SagaBatchRead,
    SagaBatchResult,
    SagaBulkControl,
    SagaBulkRead,
    SagaControlBody,
    SagaCreate,
    SagaPage,
    SagaRead,
    SagaRerun,
    SagaRerunRead,
)
from models.enums import SagaControl, SagaState
from models.errors import error_document
from models.principal import ALL_TENANTS, Principal, Scope
from models.problems import error_details, summary
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import json_response, responses
from orchestrator.errors import Forbidden, InvalidInput, OrchestratorError
from orchestrator.sagas.batch import BatchAnswer, BatchEntry, submit_batch
from orchestrator.sagas.bulk_controls import bulk_control
from orchestrator.sagas.controls import control_saga
from orchestrator.sagas.queries import list_sagas, read_saga, started_read
from orchestrator.sagas.submit import Submitted, submit_saga
from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/sagas", tags=["sagas"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
# Cursors are opaque: only the next_cursor of an earlier page is valid (anything else is a 422).
Cursor = Annotated[
    str | None,
    Query(description="Opaque: the next_cursor of the previous page, unchanged; left out: the first page."),
]
Limit = Annotated[int, Query(ge=1, le=500, description="The most items per page.")]


@router.post(
    "",
    status_code=202,
    response_model=SagaRead,
    responses={
        200: {"model": SagaRead, "description": "A retry with the same idempotence key and input: the first saga"},
        **responses(400, 401, 403, 404, 409, 422),
    },
)
def create_saga(
    body: SagaCreate,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_write)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Same as idempotence_key in the body (when both are sent they must be equal).",
        ),
    ] = None,
) -> Response:
    """Start a saga (202). A retry with the same idempotence key and input returns the first
    saga (200); the same key with another input is a 409."""
    saga, created = submit(wiring, principal, body, idempotency_key)
    return json_response(saga, 202 if created else 200)


def submit(
    wiring: Wiring, principal: Principal, body: SagaCreate, idempotency_key: str | None = None
) -> tuple[SagaRead, bool]:
    """Submit ``body`` for the principal (whose sagas:write scope the caller checked) and publish
    its first step; the saga as it reads now, and whether this call created it (False: a retry
    with the same idempotence key and input). The MCP tools submit through here too."""
    key = body.idempotence_key
    if idempotency_key is not None and key is not None and idempotency_key != key:
        raise InvalidInput(
            "the Idempotency-Key header and idempotence_key in the body differ",
            details=[{"path": "idempotence_key", "message": "differs from the header"}],
        )
    submitted = submit_saga(
        wiring.sessions,
        wiring.settings,
        template=body.template,
        version=body.version,
        input=body.input,
        idempotence_key=key or idempotency_key,
        tenant=_tenant_for(principal, body.tenant),
    )
    _publish_started(wiring, submitted.outbox, f"the first step of saga {submitted.saga.id}")
    return _answer(wiring, principal, submitted), submitted.created


def _answer(wiring: Wiring, principal: Principal, submitted: Submitted) -> SagaRead:
    """The saga as GET /api/v1/sagas/{id} would answer it now. One started now is answered from
    what its submit wrote, unless that opened work items (read back, as routing may have changed
    them); one found under its key is read."""
    if submitted.created and submitted.spec is not None and not submitted.opened_items:
        return started_read(submitted.saga, submitted.spec, submitted.attempts, tenant=principal.tenant)
    with wiring.sessions() as session:
        return read_saga(session, submitted.saga.id, tenant=principal.tenant)


def _publish_started(wiring: Wiring, outbox: list[Any], what: str) -> None:
    try:
        wiring.dispatcher.publish(outbox)
    except Exception:
        # Committed already; the outbox sweep publishes it shortly.
        log.exception("publishing %s failed; the sweep will retry", what)


def _tenant_for(principal: Principal, tenant: str | None) -> str:
    """The tenant a new saga runs for: the token's own; an all-tenant token may name one (or none)."""
    if principal.all_tenants:
        return tenant or ALL_TENANTS
    if tenant is not None and tenant != principal.tenant:
        raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
    return principal.tenant


@router.post(
    "/batch",
    response_model=SagaBatchRead,
    responses=responses(401, 403, 413, 422),
)
def create_sagas(
    body: SagaBatchCreate,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_write)],
) -> Response:
    """Submit up to 1,000 sagas in one request, all or nothing per saga, answered per entry in
    order (200 whatever became of each): each entry is started (202 in its result), answered
    with the saga its idempotence key already names when its template and input are the same
    (200), or refused with the error a single submit would have answered (403, 404, 409, 422;
    field paths start sagas.<index>.). One refused entry never keeps the others from being
    submitted. Two entries with one key are one saga if their template and input agree; else
    the later one is a 409. The sagas started are written in one transaction and their first
    steps published once it has committed."""
    results: list[SagaBatchResult | None] = [None] * len(body.sagas)
    entries: list[BatchEntry] = []
    positions: list[int] = []
    for index, raw in enumerate(body.sagas):
        try:
            entries.append(_entry(principal, index, raw))
        except OrchestratorError as exc:
            results[index] = _refused(index, exc)
            continue
        positions.append(index)
    submitted = submit_batch(wiring.sessions, wiring.settings, entries)
    _publish_started(wiring, submitted.outbox, f"the first steps of {len(submitted.outbox)} saga(s) of a batch")
    for index, answer in zip(positions, submitted.answers, strict=True):
        results[index] = _result(index, answer)
    done = [r for r in results if r is not None]
    read = SagaBatchRead(
        results=done,
        created=sum(r.status == 202 for r in done),
        existing=sum(r.status == 200 for r in done),
        refused=sum(r.status >= 400 for r in done),
    )
    return json_response(read, 200)


def _entry(principal: Principal, index: int, raw: dict[str, Any]) -> BatchEntry:
    """One entry of a batch, checked as a single submit's body is; its tenant decided likewise."""
    try:
        body = SagaCreate.model_validate(raw)
    except ValidationError as exc:
        details = error_details(exc.errors())
        said = summary([{**d, "path": _under(index, d["path"])} for d in details])
        raise InvalidInput(f"saga {index} of the batch is not valid: {said}", details=details) from exc
    return BatchEntry(
        template=body.template,
        input=body.input,
        tenant=_tenant_for(principal, body.tenant),
        version=body.version,
        idempotence_key=body.idempotence_key,
    )


def _result(index: int, answer: BatchAnswer) -> SagaBatchResult:
    if answer.error is not None:
        return _refused(index, answer.error)
    return SagaBatchResult(index=index, status=202 if answer.created else 200, saga=answer.saga, error=None)


def _refused(index: int, exc: OrchestratorError) -> SagaBatchResult:
    """A single submit's error document for the entry, its field paths under sagas.<index>."""
    error = error_document(exc.code, exc.message, exc.details)["error"]
    error["details"] = [{**d, "path": _under(index, str(d.get("path", "(root)")))} for d in error["details"]]
    return SagaBatchResult(index=index, status=exc.status, saga=None, error=ErrorDetail.model_validate(error))


def _under(index: int, path: str) -> str:
    return f"sagas.{index}" if path == "(root)" else f"sagas.{index}.{path}"


@router.post("/bulk", response_model=SagaBulkRead, responses=responses(401, 403, 409, 422))
def control_sagas(
    body: SagaBulkControl,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaBulkRead:
    """Cancel, terminate, pause, resume or retry the compensation of every saga a filter
    matches (the token's tenant's only). By default a dry run: it answers how many match and the
    first of them. To act, send ``dry_run: false`` with ``expect`` set to that count: if the
    filter matches another number by then, nothing is done (409). Each saga is controlled in a
    transaction of its own, oldest first, and answered on its own (one that finished meanwhile
    is a 409 in its result, and the others are still done); at most ``limit`` (1,000) per request."""
    actor = f"{principal.type.value}:{principal.id}"
    read = bulk_control(
        wiring.sessions,
        wiring.settings,
        body,
        actor=actor,
        tenant=principal.tenant,
        publish=lambda outbox: _publish_started(wiring, outbox, "the dispatches of a bulk control"),
    )
    if not read.dry_run:
        log.info(
            "bulk %s by %s: %d matched, %d done, %d refused: %s",
            body.action.value,
            actor,
            read.matched,
            read.done,
            read.refused,
            body.reason,
        )
    return read


@router.get("/{saga_id}", response_model=SagaRead, responses=responses(401, 403, 404))
def get_saga(
    saga_id: Annotated[str, Path(description="The saga run's id.")],
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_read)],
) -> SagaRead:
    """A saga's state, its steps, and every attempt (the timeline); another tenant's is a 404."""
    with wiring.sessions() as session:
        return read_saga(session, saga_id, tenant=principal.tenant)


@router.get("", response_model=SagaPage, responses=responses(401, 403, 422))
def get_sagas(
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_read)],
    state: Annotated[SagaState | None, Query(description="Only sagas in this state.")] = None,
    template: Annotated[str | None, Query(description="Only sagas of this template (by name).")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SagaPage:
    """The tenant's sagas, newest first."""
    with wiring.sessions() as session:
        return list_sagas(session, state=state, template=template, limit=limit, cursor=cursor, tenant=principal.tenant)


SagaId = Annotated[str, Path(description="The saga run's id.")]


@router.post("/{saga_id}/cancel", response_model=SagaRead, responses=responses(401, 403, 404, 409, 422))
def cancel_saga(
    saga_id: SagaId,
    body: SagaControlBody,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRead:
    """Cancel a running saga: nothing more is dispatched, and what it did is undone in reverse
    order. A step under way is given up as a deadline gives it up (its work items are cancelled;
    a handler's outcome is unknown, so it is undone too). The saga ends ``cancelled`` once undone
    (``compensation_failed`` if an undo fails). 409: it is compensating already, or finished."""
    return _control(wiring, principal, saga_id, SagaControl.cancel, body.reason)


@router.post("/{saga_id}/terminate", response_model=SagaRead, responses=responses(401, 403, 404, 409, 422))
def terminate_saga(
    saga_id: SagaId,
    body: SagaControlBody,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRead:
    """Stop a running or compensating saga where it stands, undoing nothing: its attempts under
    way end ``cancelled`` (their work items are cancelled; late reports are ignored) and the saga
    ends ``terminated``. What its steps did stays done. 409: it has finished already."""
    return _control(wiring, principal, saga_id, SagaControl.terminate, body.reason)


@router.post("/{saga_id}/pause", response_model=SagaRead, responses=responses(401, 403, 404, 409, 422))
def pause_saga(
    saga_id: SagaId,
    body: SagaControlBody,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRead:
    """Pause a running or compensating saga: nothing new is dispatched (a step under way goes on
    and its report is applied; the dispatch that would follow waits), and its deadline and SLA
    clocks stand still until it is resumed. 409: it is paused already, or finished."""
    return _control(wiring, principal, saga_id, SagaControl.pause, body.reason)


@router.post("/{saga_id}/resume", response_model=SagaRead, responses=responses(401, 403, 404, 409, 422))
def resume_saga(
    saga_id: SagaId,
    body: SagaControlBody,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRead:
    """Resume a paused saga: what its pause held back is dispatched now, and its clocks go on
    from where they stood (its deadline and SLA are later by the time it was paused). 409: it
    is not paused."""
    return _control(wiring, principal, saga_id, SagaControl.resume, body.reason)


@router.post("/{saga_id}/retry-compensation", response_model=SagaRead, responses=responses(401, 403, 404, 409, 422))
def retry_compensation(
    saga_id: SagaId,
    body: SagaControlBody,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRead:
    """For a saga whose compensation gave up (``compensation_failed``), once what made it fail is
    fixed: dispatch that compensation again with its attempts counted afresh, and close the
    remediation items it opened (as done, with the reason). Once it succeeds the steps below are
    undone in order. 409: the saga's compensation has not given up."""
    return _control(wiring, principal, saga_id, SagaControl.retry_compensation, body.reason)


@router.post("/{saga_id}/rerun", response_model=SagaRerunRead, responses=responses(401, 403, 404, 409, 422))
def rerun_saga(
    saga_id: SagaId,
    body: SagaRerun,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_control)],
) -> SagaRerunRead:
    """Run a saga that ended without completing (compensated, compensation_failed, cancelled,
    terminated) again, from ``from_step`` (default: the first step that did not succeed), its
    input patched by ``input_patch`` (a JSON merge patch, checked against the template's input
    schema). The steps before it whose effect stands keep their results; a step before it whose
    effect was undone runs again, and so does every step from there on, under idempotence keys
    of the rerun's own. The answer lists what becomes of each step (``dry_run``: only that,
    nothing changed). Its open remediation items are closed; the saga's deadline starts again.
    409: the saga has not ended, or it completed."""
    actor = f"{principal.type.value}:{principal.id}"
    done = control_saga(
        wiring.sessions,
        wiring.settings,
        saga_id,
        SagaControl.rerun,
        actor=actor,
        reason=body.reason,
        tenant=principal.tenant,
        from_step=body.from_step,
        input_patch=body.input_patch,
        dry_run=body.dry_run,
    )
    if not body.dry_run:
        log.info("saga %s: rerun from %s by %s: %s", saga_id, done.detail["start"], actor, body.reason)
        _publish_started(wiring, done.outbox, f"the rerun of saga {saga_id}")
    with wiring.sessions() as session:
        saga = read_saga(session, saga_id, tenant=principal.tenant)
    detail = done.detail
    return SagaRerunRead(
        dry_run=body.dry_run, start=detail["start"], input=detail["input"], steps=detail["steps"], saga=saga
    )


def _control(wiring: Wiring, principal: Principal, saga_id: str, action: SagaControl, reason: str) -> SagaRead:
    actor = f"{principal.type.value}:{principal.id}"
    done = control_saga(
        wiring.sessions, wiring.settings, saga_id, action, actor=actor, reason=reason, tenant=principal.tenant
    )
    moved = f"{done.detail['from']} -> {done.detail['to']}"
    log.info("saga %s: %s by %s (%s): %s", saga_id, action.value, actor, moved, reason)
    _publish_started(wiring, done.outbox, f"the dispatches of saga {saga_id} after its {action.value}")
    with wiring.sessions() as session:
        return read_saga(session, saga_id, tenant=principal.tenant)
