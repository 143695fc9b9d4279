"""The webhook sender: delivers the events queued by ``orchestrator.work.webhooks`` to the URLs
tenants registered, signed with HMAC-SHA256 (``X-Workyard-Signature``), retried with backoff and
logged. Any number of orchestrator processes may run one: a delivery being sent is leased."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from models.base import utcnow
from models.work_tables import Webhook, WebhookDelivery
from orchestrator.storage.db import SessionFactory
from orchestrator.work.webhooks import signature

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_S = (1, 2, 5, 15, 60, 300, 900)
TIMEOUT_S = 5.0
# A delivery being sent is pushed this far into the future, so another sender leaves it alone.
SENDING_LEASE_S = 60


class WebhookSender:
    """Delivers due webhook events; any number of orchestrator processes may run one."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        post: Callable[..., httpx.Response] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.clock = clock
        self._client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        self._post = post or self._client.post

    def close(self) -> None:
        self._client.close()

    def deliver_due(self, limit: int = 50) -> int:
        now = self.clock()
        with self.sessions.begin() as session:
            due = session.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            ).all()
            jobs = [(d.id, d.event, d.payload, d.attempts, w.url, w.secret) for d, w in due]
            if jobs:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([j[0] for j in jobs]))
                    .values(next_attempt_at=now + timedelta(seconds=SENDING_LEASE_S))
                )
        for job in jobs:
            self._send(*job)
        return len(jobs)

    def _send(
        self, delivery_id: int, event: str, payload: dict[str, Any], attempts: int, url: str, secret: str
    ) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "workyard-webhooks/1",
            "X-Workyard-Event": event,
            "X-Workyard-Delivery": str(delivery_id),
            "X-Workyard-Timestamp": timestamp,
            "X-Workyard-Signature": signature(secret, timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = self._post(url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts += 1
        now = self.clock()
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if error is None:
            values.update(state="delivered", delivered_at=now)
        elif attempts >= MAX_ATTEMPTS:
            values.update(state="failed")
            log.warning("webhook delivery %s to %s failed for good: %s", delivery_id, url, error)
        else:
            delay = BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)]
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.sessions.begin() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
