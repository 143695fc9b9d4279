"""The webhook sender: delivers the events queued by ``orchestrator.work.webhooks`` to the URLs
tenants registered, signed with HMAC-SHA256 (``X-Workyard-Signature``), retried with backoff and
logged. Any number of orchestrator processes may run one: a delivery being sent is leased.

POSTs run in a small thread pool (``WORKYARD_WEBHOOK_CONCURRENCY`` per process) with at most
``WORKYARD_WEBHOOK_TENANT_CONCURRENCY`` of one tenant's in flight across every orchestrator
process, so a tenant whose receivers hang holds back its own deliveries only. The cap is counted in
the database: a delivery being sent carries its lease (``leased_until``), and senders lease one at
a time (a transaction-scoped advisory lock on PostgreSQL; SQLite's write lock, which every
transaction of ours takes up front), so a count of a tenant's live leases and the leases added to
it are one step. Every connection goes through the target policy after
DNS (``webhook_transport``). The delivery log keeps the status and a short reason (``HTTP 500``,
``connect refused``, ``target not allowed: …``), never what the receiver answered: a log that
echoes answers or connect errors would turn webhooks into a port scanner.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from config.settings import Settings
from models.base import utcnow
from models.work_tables import Webhook, WebhookDelivery
from orchestrator.storage.db import SessionFactory, reading
from orchestrator.storage.pipeline import select_in_turn
from orchestrator.storage.secret_box import SecretKeyError, secret_box
from orchestrator.work.webhook_targets import Resolver, TargetRefused, system_resolver
from orchestrator.work.webhooks import signature

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_S = (1, 2, 5, 15, 60, 300, 900)
# A delivery being sent is pushed this far past its timeout, so another sender leaves it alone.
SENDING_LEASE_MARGIN_S = 55
# Due deliveries looked at per query; tenants at their cap are left out of the next query.
BATCH = 100
MAX_QUERIES_PER_TICK = 8
# PostgreSQL advisory lock key that serialises leasing across orchestrator processes
# ("wyhooks" in ASCII; any bigint no other code of ours takes).
LEASE_LOCK_KEY = 0x77_79_68_6F_6F_6B_73


@dataclass(frozen=True)
class Job:
    """One delivery to send: what the sender read for it in the transaction that leased it."""

    delivery_id: int
    tenant: str
    event: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret_encrypted: str


class WebhookSender:
    """Delivers due webhook events concurrently, a few per tenant at a time; any number of
    orchestrator processes may run one."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        verify: ssl.SSLContext | None = None,
        resolver: Resolver = system_resolver,
    ):
        from orchestrator.service.webhook_transport import guarded_client

        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self._box = secret_box(settings)
        self._client = guarded_client(
            allow_private=settings.webhook_allow_private_targets,
            timeout_s=settings.webhook_timeout_s,
            verify=verify,
            max_connections=settings.webhook_concurrency,
            resolver=resolver,
        )
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._running = 0  # POSTs of this process in flight (the tenants' counts are in the database)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def tick(self) -> int:
        """Start sending what is due and fits (the loop's step; does not wait for the POSTs)."""
        return len(self._start())

    def deliver_due(self) -> int:
        """Send what is due and fits, and wait for those POSTs to finish; how many were sent."""
        futures = self._start()
        wait(futures)
        for future in futures:
            future.result()
        return len(futures)

    def _start(self) -> list[Future[None]]:
        futures: list[Future[None]] = []
        # A batch that one busy tenant filled is followed by one without that tenant.
        for _ in range(MAX_QUERIES_PER_TICK):
            jobs, again = self._lease()
            futures += [self._pool.submit(self._run, job) for job in jobs]
            if not again:
                break
        return futures

    def _lease(self) -> tuple[list[Job], bool]:
        """Lease due deliveries for as many POSTs as the pool and the tenants' caps allow; and
        whether another query may find more (some were left because their tenant was full)."""
        cap = self.settings.webhook_tenant_concurrency
        with self._lock:
            free = self.settings.webhook_concurrency - self._running
        if free <= 0:
            return [], False
        now = self.clock()
        jobs: list[Job] = []
        dropped: list[int] = []
        capped = False
        with reading(self.sessions) as session:
            if not _anything_due(session, now):
                # The idle tick: one statement on the due index, no lock, no counting.
                return [], False
        with self.sessions.begin() as session:
            in_flight = _leased_per_tenant(session, now)
            full = [tenant for tenant, n in in_flight.items() if n >= cap]
            query = (
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    # Deliveries of a disabled webhook wait; those a deleted one got late are dropped below.
                    or_(Webhook.disabled_at.is_(None), Webhook.deleted_at.is_not(None)),
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
            if full:
                query = query.where(Webhook.tenant.not_in(full))
            for delivery, hook in session.execute(query).all():
                if hook.deleted_at is not None:
                    dropped.append(delivery.id)
                    continue
                if len(jobs) >= free:
                    break
                if in_flight[hook.tenant] >= cap:
                    capped = True
                    continue
                in_flight[hook.tenant] += 1
                jobs.append(
                    Job(
                        delivery.id,
                        hook.tenant,
                        delivery.event,
                        delivery.payload,
                        delivery.attempts,
                        hook.url,
                        hook.secret_encrypted,
                    )
                )
            if jobs:
                until = now + timedelta(seconds=self.settings.webhook_timeout_s + SENDING_LEASE_MARGIN_S)
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([j.delivery_id for j in jobs]))
                    .values(next_attempt_at=until, leased_until=until)
                )
            if dropped:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(dropped))
                    .values(state="failed", last_error="webhook deleted")
                )
        with self._lock:
            self._running += len(jobs)
        return jobs, capped and len(jobs) < free

    def _run(self, job: Job) -> None:
        try:
            self._send(job)
        except Exception:
            # The delivery stays leased (and counted against its tenant's cap) and is tried
            # again when its lease lapses.
            log.exception("webhook delivery %s could not be sent or recorded", job.delivery_id)
        finally:
            with self._lock:
                self._running -= 1

    def _send(self, job: Job) -> None:
        status, error, final = self._post(job)
        attempts = job.attempts + 1
        now = self.clock()
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": status,
            "last_error": error,
            "leased_until": None,
        }
        if error is None:
            values.update(state="delivered", delivered_at=now)
        elif final or attempts >= MAX_ATTEMPTS:
            values.update(state="failed")
            log.warning("webhook delivery %s failed for good: %s", job.delivery_id, error)
        else:
            delay = BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)]
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.sessions.begin() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == job.delivery_id).values(**values))

    def _post(self, job: Job) -> tuple[int | None, str | None, bool]:
        """POST one delivery: (HTTP status, short reason it failed or None, whether retrying is pointless)."""
        try:
            secret = self._box.decrypt(job.secret_encrypted)
        except SecretKeyError as exc:
            return None, str(exc), True
        body = json.dumps(job.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "workyard-webhooks/1",
            "X-Workyard-Event": job.event,
            "X-Workyard-Delivery": str(job.delivery_id),
            "X-Workyard-Timestamp": timestamp,
            "X-Workyard-Signature": signature(secret, timestamp, body),
        }
        try:
            # Streamed and never read: the answer's body is none of our business.
            with self._client.stream("POST", job.url, content=body, headers=headers) as response:
                status = response.status_code
        except TargetRefused as exc:
            # Policy refuses what the name resolves to now: retrying would only probe again.
            return None, f"target not allowed: {exc.reason}", True
        except httpx.HTTPError as exc:
            return None, _reason(exc), False
        return status, None if 200 <= status < 300 else f"HTTP {status}", False


def _anything_due(session: Session, now: datetime) -> bool:
    """Whether any pending delivery the sender would lease is due: a disabled webhook's wait
    (and would otherwise make every idle tick a leasing transaction), a deleted one's are dropped."""
    [[(first,)]] = select_in_turn(session, [(_FIRST_DUE, {})])
    return first is not None and first <= now


# The idle tick's statement, built once (building it cost as much as running it).
_FIRST_DUE = (
    select(func.min(WebhookDelivery.next_attempt_at))
    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
    .where(
        WebhookDelivery.state == "pending",
        or_(Webhook.disabled_at.is_(None), Webhook.deleted_at.is_not(None)),
    )
)


def _leased_per_tenant(session: Session, now: datetime) -> Counter[str]:
    """How many deliveries of each tenant are being sent now, by any process; from here to the
    end of ``session``'s transaction no other sender leases (so the counts stay true)."""
    if session.get_bind().dialect.name == "postgresql":
        # Taken before the count: under READ COMMITTED the count then sees every lease a sender
        # committed before it let go of the lock. Released at commit.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEASE_LOCK_KEY})
    rows = session.execute(
        select(Webhook.tenant, func.count())
        .select_from(WebhookDelivery)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.leased_until.is_not(None),
            WebhookDelivery.leased_until > now,
            WebhookDelivery.state == "pending",
        )
        .group_by(Webhook.tenant)
    ).all()
    return Counter({tenant: int(n) for tenant, n in rows})


def _reason(exc: httpx.HTTPError) -> str:
    """A short, fixed reason for a failed POST: never the text of the error, which may quote
    whatever the other end said."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "DNS lookup failed" in text:
            return "DNS lookup failed"
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            return "TLS certificate not valid"
        if "SSL" in text or "TLS" in text:
            return "TLS handshake failed"
        if "refused" in text.lower():
            return "connect refused"
        return "connect failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol error"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "unsupported URL"
    return "request failed"
