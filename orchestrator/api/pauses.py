"""Pauses of templates and capability queues: ``POST /api/v1/templates/{name}/pause|resume``,
``POST /api/v1/capabilities/{capability}/pause|resume``, and ``GET /api/v1/pauses`` (in force)
and ``GET /api/v1/pauses/history`` (the audit trail)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from models.enums import PauseKind
from models.pause_api import PauseAuditRead, PauseBody, PauseControlRead, PauseRead
from models.principal import Principal, Scope
from models.template import CAPABILITY
from models.work_api import no_null
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.sagas.queue_pauses import list_pauses, pause_history, pause_queue, resume_queue, whose
from orchestrator.service.wiring import Wiring
from orchestrator.storage.unit_of_work import Outgoing

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["pauses"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
ControlDep = Annotated[Principal, needs(Scope.sagas_control)]
TemplateName = Annotated[str, Path(min_length=1, max_length=200, description="The template's name.")]
Capability = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=CAPABILITY,
        description="The capability (its queue is cap.<capability>): lower-case letters, digits, _ and -.",
    ),
]
_ERRORS = responses(401, 403, 404, 409, 422)


@router.post("/templates/{name}/pause", response_model=PauseControlRead, responses=_ERRORS)
def pause_template(name: TemplateName, body: PauseBody, wiring: WiringDep, principal: ControlDep) -> PauseControlRead:
    """Pause a template for the token's tenant's sagas (an all-tenants token: every tenant's, or
    the ``tenant`` named): nothing new is dispatched for their steps of it (the step under way
    goes on; the dispatch that would follow waits, its saga's deadline and SLA clocks stopped),
    and new sagas of it are taken and wait. 404: the tenant runs no template of that name; 409:
    paused already."""
    return _pause(wiring, principal, PauseKind.template, name, body)


@router.post("/templates/{name}/resume", response_model=PauseControlRead, responses=_ERRORS)
def resume_template(name: TemplateName, body: PauseBody, wiring: WiringDep, principal: ControlDep) -> PauseControlRead:
    """Resume a template's pause: what it held is dispatched now, oldest first, and the sagas'
    clocks go on from where they stood. 403: it is paused for every tenant (an all-tenants token
    resumes that); 409: not paused."""
    return _resume(wiring, principal, PauseKind.template, name, body)


@router.post("/capabilities/{capability}/pause", response_model=PauseControlRead, responses=_ERRORS)
def pause_capability(
    capability: Capability, body: PauseBody, wiring: WiringDep, principal: ControlDep
) -> PauseControlRead:
    """Pause a capability queue for the token's tenant's sagas (an all-tenants token: every
    tenant's, or the ``tenant`` named): nothing new is dispatched onto ``cap.<capability>`` for
    them, forward or compensating (messages already in the queue are still taken by its workers);
    the dispatch waits with its saga's clocks stopped. 409: paused already."""
    return _pause(wiring, principal, PauseKind.capability, capability, body)


@router.post("/capabilities/{capability}/resume", response_model=PauseControlRead, responses=_ERRORS)
def resume_capability(
    capability: Capability, body: PauseBody, wiring: WiringDep, principal: ControlDep
) -> PauseControlRead:
    """Resume a capability's pause: what it held is dispatched now, oldest first. 403: it is
    paused for every tenant (an all-tenants token resumes that); 409: not paused."""
    return _resume(wiring, principal, PauseKind.capability, capability, body)


@router.get("/pauses", response_model=list[PauseRead], responses=responses(401, 403))
def get_pauses(wiring: WiringDep, principal: Annotated[Principal, needs(Scope.sagas_read)]) -> list[PauseRead]:
    """The pauses in force that hold the token's tenant's sagas (its own and every tenant's; all
    of them for an all-tenants token), oldest first, with who paused them, when and why."""
    with wiring.sessions() as session:
        return list_pauses(session, tenant=principal.tenant)


@router.get("/pauses/history", response_model=list[PauseAuditRead], responses=responses(401, 403, 422))
def get_pause_history(
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.sagas_read)],
    kind: Annotated[PauseKind | None, Query(json_schema_extra=no_null, description="Only of this kind.")] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1, max_length=200, json_schema_extra=no_null, description="Only of this template or capability."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most entries.")] = 100,
) -> list[PauseAuditRead]:
    """Every pause and resume (who, when, why), newest first: of the token's tenant's own pauses
    and of every tenant's (all for an all-tenants token)."""
    with wiring.sessions() as session:
        return pause_history(session, tenant=principal.tenant, kind=kind, name=name, limit=limit)


def _pause(wiring: Wiring, principal: Principal, kind: PauseKind, name: str, body: PauseBody) -> PauseControlRead:
    tenant = whose(principal.tenant, body.tenant)
    pause = pause_queue(wiring.sessions, kind, name, tenant=tenant, actor=principal.ref, reason=body.reason)
    log.info("%s %r paused for tenant %s by %s: %s", kind.value, name, tenant, principal.ref, body.reason)
    return PauseControlRead(pause=pause, resumed=False)


def _resume(wiring: Wiring, principal: Principal, kind: PauseKind, name: str, body: PauseBody) -> PauseControlRead:
    tenant = whose(principal.tenant, body.tenant)

    def publish(outbox: list[Outgoing]) -> None:
        try:
            wiring.dispatcher.publish(outbox)
        except Exception:
            # Committed already; the outbox sweep publishes it shortly.
            log.exception("publishing the dispatches a %s pause held failed; the sweep will retry", kind.value)

    pause, sent = resume_queue(
        wiring.sessions,
        wiring.settings,
        publish,
        kind,
        name,
        tenant=tenant,
        actor=principal.ref,
        reason=body.reason,
    )
    log.info(
        "%s %r resumed for tenant %s by %s (%d sent): %s", kind.value, name, tenant, principal.ref, sent, body.reason
    )
    return PauseControlRead(pause=pause, resumed=True, sent=sent)
