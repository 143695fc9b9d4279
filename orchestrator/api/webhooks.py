"""``/api/v1/webhooks``: a tenant's outgoing notifications and their delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from models.principal import Scope
from models.work_api import DeliveryRead, WebhookCreate, WebhookRead
from models.work_tables import Webhook
from orchestrator.api.auth import PrincipalDep, needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.service.wiring import Wiring
from orchestrator.work import webhooks
from orchestrator.work.access import tenant_for_write

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], dependencies=[needs(Scope.webhooks)])
WiringDep = Annotated[Wiring, Depends(get_wiring)]


@router.post("", status_code=201, response_model=WebhookRead, responses=responses(401, 403, 422))
def create_webhook(body: WebhookCreate, wiring: WiringDep, principal: PrincipalDep) -> WebhookRead:
    """Register a URL for events (``sla.warning``, ``sla.breached``, ``work_item.escalated``,
    ``saga.completed``, ``saga.compensated``, ``saga.compensation_failed``, ``saga.sla_warning``,
    ``saga.sla_breached``, ``saga.escalated``, or ``*``). The answer carries the signing secret,
    once. Saga events go to all-tenant webhooks (registered with an all-tenant token)."""
    unknown = [e for e in body.events if e != "*" and e not in webhooks.EVENTS]
    if unknown:
        raise InvalidInput(
            f"unknown event(s) {', '.join(unknown)}; known: {', '.join(webhooks.EVENTS)} or *",
            details=[{"path": f"events.{body.events.index(e)}", "message": "unknown event"} for e in unknown],
        )
    tenant = tenant_for_write(principal, body.tenant) if body.tenant or not principal.all_tenants else "*"
    with wiring.sessions.begin() as session:
        hook = webhooks.register(session, tenant=tenant, url=body.url, events=body.events, created_by=principal.ref)
        return WebhookRead.model_validate(hook).model_copy(update={"secret": hook.secret})


@router.get("", response_model=list[WebhookRead], responses=responses(401, 403))
def list_webhooks(wiring: WiringDep, principal: PrincipalDep) -> list[WebhookRead]:
    query = select(Webhook).where(Webhook.disabled_at.is_(None)).order_by(Webhook.created_at)
    if not principal.all_tenants:
        query = query.where(Webhook.tenant == principal.tenant)
    with wiring.sessions() as session:
        return [WebhookRead.model_validate(r) for r in session.scalars(query)]


@router.get("/deliveries", response_model=list[DeliveryRead], responses=responses(401, 403, 422))
def list_deliveries(
    wiring: WiringDep,
    principal: PrincipalDep,
    webhook_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryRead]:
    """The delivery log, newest first."""
    with wiring.sessions() as session:
        tenant = None if principal.all_tenants else principal.tenant
        if webhook_id is not None:
            hook = session.get(Webhook, webhook_id)
            if hook is None or not principal.sees(hook.tenant):
                raise NotFound(f"no webhook {webhook_id!r}")
        rows = webhooks.deliveries(session, tenant=tenant, webhook_id=webhook_id, limit=limit)
        return [
            DeliveryRead(
                id=d.id,
                webhook_id=d.webhook_id,
                url=url,
                event=d.event,
                state=d.state,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                created_at=d.created_at,
                next_attempt_at=d.next_attempt_at,
                delivered_at=d.delivered_at,
            )
            for d, url in rows
        ]
