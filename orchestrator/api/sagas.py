"""``/api/v1/sagas``: submit sagas (idempotently) and read their timelines."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from models.api import SagaCreate, SagaPage, SagaRead
from models.enums import SagaState
from models.principal import ALL_TENANTS, Principal, Scope
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import Forbidden, InvalidInput
from orchestrator.sagas.queries import list_sagas, read_saga
from orchestrator.sagas.submit import submit_saga
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
    response: Response,
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
) -> SagaRead:
    """Start a saga (202). A retry with the same idempotence key and input returns the first
    saga (200); the same key with another input is a 409."""
    saga, created = submit(wiring, principal, body, idempotency_key)
    if not created:
        response.status_code = 200
    return saga


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
    try:
        wiring.dispatcher.publish(submitted.outbox)
    except Exception:
        # Committed already; the outbox sweep publishes it shortly.
        log.exception("publishing the first step of saga %s failed; the sweep will retry", submitted.saga.id)
    with wiring.sessions() as session:
        return read_saga(session, submitted.saga.id, tenant=principal.tenant), submitted.created


def _tenant_for(principal: Principal, tenant: str | None) -> str:
    """The tenant a new saga runs for: the token's own; an all-tenant token may name one (or none)."""
    if principal.all_tenants:
        return tenant or ALL_TENANTS
    if tenant is not None and tenant != principal.tenant:
        raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
    return principal.tenant


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
