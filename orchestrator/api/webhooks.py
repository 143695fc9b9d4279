"""``/api/v1/webhooks``: a tenant's outgoing notifications and their delivery log.

Every route is the caller's tenant's (an all-tenant token's: every tenant's); another tenant's
webhook or delivery is a 404, the same answer as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from models.principal import Principal, Scope
from models.work_api import DeliveryRead, WebhookCreate, WebhookRead, WebhookWithSecret
from models.work_tables import Webhook, WebhookDelivery
from orchestrator.api.auth import PrincipalDep, needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.service.wiring import Wiring
from orchestrator.storage.secret_box import secret_box
from orchestrator.work import webhooks
from orchestrator.work.access import tenant_for_write

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], dependencies=[needs(Scope.webhooks)])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
WebhookId = Annotated[str, Path(description="The webhook's id.")]


def _tenant(principal: Principal) -> str | None:
    return None if principal.all_tenants else principal.tenant


@router.post("", status_code=201, response_model=WebhookWithSecret, responses=responses(401, 403, 422))
def create_webhook(body: WebhookCreate, wiring: WiringDep, principal: PrincipalDep) -> WebhookWithSecret:
    """Register a URL for events (``sla.warning``, ``sla.breached``, ``work_item.escalated``,
    ``saga.completed``, ``saga.compensated``, ``saga.compensation_failed``, ``saga.cancelled``,
    ``saga.terminated``, ``saga.sla_warning``, ``saga.sla_breached``, ``saga.escalated``, or ``*``).
    The answer carries the signing secret, once. A URL whose host is a loopback, private,
    link-local, unique-local, multicast, unspecified or cloud metadata address (or a well-known name
    of one), or a name that resolves to one now, is a 422 naming ``url``, unless the operator allows
    private targets. A name that does not resolve (or not within 2 s) is accepted: the API's
    resolver may not be the orchestrators' (split-horizon DNS) and a record may be published later;
    every address a name resolves to is checked again at every send, and a refused one fails the
    delivery."""
    tenant = tenant_for_write(principal, body.tenant) if body.tenant or not principal.all_tenants else "*"
    # The DNS lookup, before the transaction opens: it may take seconds, and this (sync) route
    # runs in the server's thread pool, never on its event loop.
    webhooks.check_url(body.url, allow_private=wiring.settings.webhook_allow_private_targets, resolver=wiring.resolver)
    with wiring.sessions.begin() as session:
        hook, secret = webhooks.register(
            session,
            tenant=tenant,
            url=body.url,
            events=body.events,
            created_by=principal.ref,
            box=secret_box(wiring.settings),
            allow_private=wiring.settings.webhook_allow_private_targets,
        )
        return _with_secret(hook, secret)


@router.get("", response_model=list[WebhookRead], responses=responses(401, 403))
def list_webhooks(wiring: WiringDep, principal: PrincipalDep) -> list[WebhookRead]:
    """The webhooks, enabled and disabled (never their secrets)."""
    with wiring.sessions() as session:
        return [WebhookRead.model_validate(r) for r in webhooks.listed(session, tenant=_tenant(principal))]


@router.get("/deliveries", response_model=list[DeliveryRead], responses=responses(401, 403, 404, 422))
def list_deliveries(
    wiring: WiringDep,
    principal: PrincipalDep,
    webhook_id: Annotated[
        str | None, Query(description="Only this webhook's deliveries (an unknown one is a 404).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most deliveries to return.")] = 50,
) -> list[DeliveryRead]:
    """The delivery log, newest first: state, attempts, last HTTP status and a short reason
    (never what the receiver answered)."""
    with wiring.sessions() as session:
        tenant = _tenant(principal)
        if webhook_id is not None:
            webhooks.get(session, webhook_id, tenant=tenant)
        rows = webhooks.deliveries(session, tenant=tenant, webhook_id=webhook_id, limit=limit)
        return [_delivery(d, url) for d, url in rows]


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryRead,
    responses=responses(401, 403, 404, 422),
)
def redeliver(
    # Bounded to a BIGINT: a larger id was a 500 on PostgreSQL ("bigint out of range"), found by make fuzz.
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The delivery's id.")],
    wiring: WiringDep,
    principal: PrincipalDep,
) -> DeliveryRead:
    """Send a delivery again, now, with a fresh budget of attempts and the same
    ``X-Workyard-Delivery`` (a receiver that has it already can tell)."""
    with wiring.sessions.begin() as session:
        delivery, url = webhooks.redeliver(session, delivery_id, tenant=_tenant(principal))
        return _delivery(delivery, url)


@router.get("/{webhook_id}", response_model=WebhookRead, responses=responses(401, 403, 404))
def get_webhook(webhook_id: WebhookId, wiring: WiringDep, principal: PrincipalDep) -> WebhookRead:
    """One webhook (never its secret)."""
    with wiring.sessions() as session:
        return WebhookRead.model_validate(webhooks.get(session, webhook_id, tenant=_tenant(principal)))


@router.delete("/{webhook_id}", status_code=204, responses=responses(401, 403, 404))
def delete_webhook(webhook_id: WebhookId, wiring: WiringDep, principal: PrincipalDep) -> Response:
    """Delete a webhook: it hears nothing more, its secret is wiped and its pending deliveries fail."""
    with wiring.sessions.begin() as session:
        webhooks.delete(session, webhooks.get(session, webhook_id, tenant=_tenant(principal), lock=True))
    return Response(status_code=204)


@router.post("/{webhook_id}/disable", response_model=WebhookRead, responses=responses(401, 403, 404))
def disable_webhook(webhook_id: WebhookId, wiring: WiringDep, principal: PrincipalDep) -> WebhookRead:
    """Stop a webhook: no new events reach it and its pending deliveries wait until it is enabled."""
    return _set_enabled(webhook_id, wiring, principal, enabled=False)


@router.post("/{webhook_id}/enable", response_model=WebhookRead, responses=responses(401, 403, 404))
def enable_webhook(webhook_id: WebhookId, wiring: WiringDep, principal: PrincipalDep) -> WebhookRead:
    """Start a disabled webhook again: its pending deliveries go out."""
    return _set_enabled(webhook_id, wiring, principal, enabled=True)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret, responses=responses(401, 403, 404))
def rotate_secret(webhook_id: WebhookId, wiring: WiringDep, principal: PrincipalDep) -> WebhookWithSecret:
    """Give a webhook a new signing secret, answered once; deliveries from now on are signed with it."""
    with wiring.sessions.begin() as session:
        hook = webhooks.get(session, webhook_id, tenant=_tenant(principal), lock=True)
        secret = webhooks.rotate_secret(session, hook, secret_box(wiring.settings))
        return _with_secret(hook, secret)


def _set_enabled(webhook_id: WebhookId, wiring: Wiring, principal: Principal, *, enabled: bool) -> WebhookRead:
    with wiring.sessions.begin() as session:
        hook = webhooks.get(session, webhook_id, tenant=_tenant(principal), lock=True)
        webhooks.set_enabled(session, hook, enabled)
        return WebhookRead.model_validate(hook)


def _with_secret(hook: Webhook, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret.model_validate({**WebhookRead.model_validate(hook).model_dump(), "secret": secret})


def _delivery(d: WebhookDelivery, url: str) -> DeliveryRead:
    fields: dict[str, Any] = {
        name: getattr(d, name)
        for name in (
            "id",
            "webhook_id",
            "event",
            "state",
            "attempts",
            "last_status",
            "last_error",
            "created_at",
            "next_attempt_at",
            "delivered_at",
        )
    }
    return DeliveryRead(url=url, **fields)
