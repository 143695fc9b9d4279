"""Outgoing webhooks: registering them, and queueing their events (SLA warnings and breaches,
escalations and saga outcomes) for the sender (``orchestrator.service.webhooks``), which POSTs
them to the URLs a tenant registered, signed with HMAC-SHA256, retried with backoff, and logged.

An event is written as delivery rows in the transaction that caused it (so it is never lost and
never sent for something that rolled back); the sender loop delivers them afterwards. Receivers
check ``X-Workyard-Signature: sha256=<hex>``, an HMAC-SHA256 with the webhook's secret over
``<X-Workyard-Timestamp>.<body>``, and dedup on ``X-Workyard-Delivery`` (a delivery may be
retried after a timeout that the receiver in fact answered).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import ALL_TENANTS
from models.work_tables import DELIVERIES, Webhook, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = (
    "sla.warning",
    "sla.breached",
    "work_item.escalated",
    "saga.completed",
    "saga.compensated",
    "saga.compensation_failed",
    "saga.sla_warning",
    "saga.sla_breached",
    "saga.escalated",
)
# Which webhooks exist is looked up again after this long (it is read on every saga outcome).
CACHE_TTL_S = 2.0


@dataclass(frozen=True)
class Target:
    """A webhook that may receive an event: its id and the events it subscribed to."""

    id: str
    events: frozenset[str]


_cache: dict[tuple[int, str], tuple[float, list[Target]]] = {}
_cache_lock = threading.Lock()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def register(session: Session, *, tenant: str, url: str, events: Iterable[str], created_by: str) -> Webhook:
    hook = Webhook(
        id=secrets.token_hex(8),
        tenant=tenant,
        url=url,
        secret=f"whsec_{secrets.token_urlsafe(24)}",
        events=sorted(set(events)),
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(hook)
    session.flush()
    _cache.clear()
    return hook


def emit(session: Session, tenant: str | None, event: str, payload: dict[str, Any], now: datetime) -> int:
    """Queue ``event`` for the tenant's webhooks (and operators' all-tenant ones) that want it.

    Sagas carry no tenant yet: their events (``tenant=None``) go to all-tenant webhooks only.
    """
    targets = [t for t in _targets(session, tenant) if event in t.events or "*" in t.events]
    if not targets:
        return 0
    body = {"event": event, "at": now.isoformat(), "tenant": tenant, "data": payload}
    session.execute(
        insert(DELIVERIES),
        [
            {
                "webhook_id": t.id,
                "event": event,
                "payload": body,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for t in targets
        ],
    )
    return len(targets)


def _targets(session: Session, tenant: str | None) -> list[Target]:
    key = (id(session.get_bind()), tenant or "")
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    tenants = [ALL_TENANTS] if tenant is None else [tenant, ALL_TENANTS]
    # No autoflush: webhooks are registered in transactions of their own, and a flush here, in
    # the middle of a coordinator batch, would write its changed rows one UPDATE at a time.
    with session.no_autoflush:
        rows = session.scalars(select(Webhook).where(Webhook.tenant.in_(tenants), Webhook.disabled_at.is_(None))).all()
    targets = [Target(r.id, frozenset(r.events)) for r in rows]
    with _cache_lock:
        _cache[key] = (now + CACHE_TTL_S, targets)
    return targets


def deliveries(session: Session, *, tenant: str | None, webhook_id: str | None = None, limit: int = 50) -> list[Any]:
    query = (
        select(WebhookDelivery, Webhook.url)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(Webhook.tenant == tenant)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    return list(session.execute(query).all())
