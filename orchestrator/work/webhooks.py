"""Outgoing webhooks: registering them, and queueing their events (SLA warnings and breaches,
escalations and saga outcomes) for the sender (``orchestrator.service.webhooks``), which POSTs
them to the URLs a tenant registered, signed with HMAC-SHA256, retried with backoff, and logged.

An event is written as delivery rows in the transaction that caused it (so it is never lost and
never sent for something that rolled back); the sender loop delivers them afterwards. Receivers
check ``X-Workyard-Signature: sha256=<hex>``, an HMAC-SHA256 with the webhook's secret over
``<X-Workyard-Timestamp>.<body>``, and dedup on ``X-Workyard-Delivery`` (a delivery may be
retried after a timeout that the receiver in fact answered).

A webhook's URL is checked against the target policy (``webhook_targets``) when it is registered
(with a DNS lookup: ``check_url`` with a resolver, before the registering transaction opens), and
again by the sender at every send. Its secret is shown once (at creation and at rotation) and
stored encrypted. A tenant disables, enables, deletes, rotates and redelivers its own webhooks
only: another tenant's is not there (``NotFound``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import ALL_TENANTS
from models.work_api import WEBHOOK_EVENTS
from models.work_tables import DELIVERIES, Webhook, WebhookDelivery
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.storage.secret_box import SecretBox, SecretKeyError
from orchestrator.work.webhook_targets import Resolver, registration_refusal, url_refusal

log = logging.getLogger(__name__)

EVENTS = WEBHOOK_EVENTS
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
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``<timestamp>.<body>``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(24)}"


def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """InvalidInput (naming ``url``) when the target policy refuses ``url``: its literal address
    or well-known name, and with a ``resolver``, the addresses its name resolves to now (which may
    take up to ``REGISTRATION_LOOKUP_TIMEOUT_S``: call it outside a transaction)."""
    if resolver is None:
        reason = url_refusal(url, allow_private=allow_private)
    else:
        reason = registration_refusal(url, allow_private=allow_private, resolver=resolver)
    if reason is not None:
        raise InvalidInput(f"webhook target not allowed: {reason}", details=[{"path": "url", "message": reason}])


def register(
    session: Session,
    *,
    tenant: str,
    url: str,
    events: Iterable[str],
    created_by: str,
    box: SecretBox,
    allow_private: bool,
) -> tuple[Webhook, str]:
    """Register a webhook; returns it and its signing secret (which is stored encrypted only)."""
    check_url(url, allow_private=allow_private)
    secret = new_secret()
    hook = Webhook(
        id=secrets.token_hex(8),
        tenant=tenant,
        url=url,
        secret_encrypted=box.encrypt(secret),
        events=sorted(set(events)),
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(hook)
    session.flush()
    _cache.clear()
    return hook, secret


def get(session: Session, hook_id: str, *, tenant: str | None, lock: bool = False) -> Webhook:
    """The webhook ``hook_id`` of ``tenant`` (None: any tenant's); NotFound when it is another
    tenant's, deleted, or not there (the same answer, so nothing leaks)."""
    query = select(Webhook).where(Webhook.id == hook_id, Webhook.deleted_at.is_(None))
    if tenant is not None:
        query = query.where(Webhook.tenant == tenant)
    hook = session.scalars(query.with_for_update() if lock else query).first()
    if hook is None:
        raise NotFound(f"no webhook {hook_id!r}")
    return hook


def listed(session: Session, *, tenant: str | None) -> list[Webhook]:
    """Webhooks (enabled and disabled, not deleted), oldest first."""
    query = select(Webhook).where(Webhook.deleted_at.is_(None)).order_by(Webhook.created_at, Webhook.id)
    if tenant is not None:
        query = query.where(Webhook.tenant == tenant)
    return list(session.scalars(query))


def rotate_secret(session: Session, hook: Webhook, box: SecretBox) -> str:
    """Give ``hook`` a new signing secret (deliveries from now on are signed with it); returns it."""
    secret = new_secret()
    hook.secret_encrypted = box.encrypt(secret)
    session.flush()
    return secret


@dataclass
class Rekeyed:
    """What one batch of ``rekey`` did."""

    seen: int = 0  # stored secrets looked at
    reencrypted: int = 0  # written again with the first key
    current: int = 0  # already under the first key: left alone
    undecryptable: list[str] = field(default_factory=list)  # ids of webhooks no key decrypts: left alone
    last_id: str = ""  # where the next batch starts (after this id)


def stored_secrets(session: Session) -> int:
    """How many webhooks have a stored secret (a deleted one has none)."""
    return session.scalar(select(func.count()).select_from(Webhook).where(Webhook.secret_encrypted != "")) or 0


def rekey(session: Session, box: SecretBox, *, after: str = "", limit: int = 100) -> Rekeyed:
    """Re-encrypt, with ``box``'s first key, the stored secrets of up to ``limit`` webhooks whose
    id sorts after ``after``. A secret under the first key already is left as it is (running it
    again changes nothing); one that no key decrypts is left as it is and its webhook named."""
    done = Rekeyed(last_id=after)
    rows = session.execute(
        select(Webhook.id, Webhook.secret_encrypted)
        .where(Webhook.secret_encrypted != "", Webhook.id > after)
        .order_by(Webhook.id)
        .limit(limit)
    ).all()
    for hook_id, token in rows:
        done.seen += 1
        done.last_id = hook_id
        try:
            fresh = box.reencrypt(token)
        except SecretKeyError:
            done.undecryptable.append(hook_id)
            continue
        if fresh is None:
            done.current += 1
            continue
        # Only over the ciphertext that was read: a secret rotated (or a webhook deleted) since
        # then was written by a process that already encrypts with the first key, and stays.
        session.execute(
            update(Webhook)
            .where(Webhook.id == hook_id, Webhook.secret_encrypted == token)
            .values(secret_encrypted=fresh)
        )
        done.reencrypted += 1
    return done


def set_enabled(session: Session, hook: Webhook, enabled: bool) -> None:
    """Disable (no new events; pending deliveries wait) or enable (they go out) ``hook``."""
    if enabled:
        hook.disabled_at = None
    elif hook.disabled_at is None:
        hook.disabled_at = utcnow()
    session.flush()
    _cache.clear()


def delete(session: Session, hook: Webhook) -> None:
    """Delete ``hook``: its secret is wiped and its pending deliveries fail. The row stays (the
    delivery log points at it, and another process may still hold it in its cache for a moment)."""
    now = utcnow()
    hook.deleted_at = now
    hook.disabled_at = hook.disabled_at or now
    hook.secret_encrypted = ""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.state == "pending")
        .values(state="failed", last_error="webhook deleted")
    )
    session.flush()
    _cache.clear()


def redeliver(session: Session, delivery_id: int, *, tenant: str | None) -> tuple[WebhookDelivery, str]:
    """Send delivery ``delivery_id`` again, now, with a fresh budget of attempts (same delivery id,
    so a receiver that got it already can tell). Returns it and its webhook's URL."""
    query = (
        select(WebhookDelivery, Webhook.url)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id == delivery_id, Webhook.deleted_at.is_(None))
    )
    if tenant is not None:
        query = query.where(Webhook.tenant == tenant)
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    delivery, url = row
    delivery.state = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.delivered_at = None
    session.flush()
    return delivery, url


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
    """The delivery log of ``tenant``'s webhooks (None: every tenant's), newest first: (delivery, url) rows."""
    query = (
        select(WebhookDelivery, Webhook.url)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(Webhook.deleted_at.is_(None))
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(Webhook.tenant == tenant)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    return list(session.execute(query).all())
