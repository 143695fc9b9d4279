"""The outbox dispatcher: publishes committed outbox rows and re-publishes unconfirmed ones.

A row is deleted once the broker has taken its message. Deletions are batched: the coordinator
and the timer loop fold them into their next transaction, and a short timer flushes what is
left, so publishing costs no transaction of its own under load.

The task-sent events of the dispatches (Flower's view of each step being sent) are gathered
the same way and sent by that timer, as one message for everything published in its window:
the API publishes each submit's first step on its own, and a message per submit for its event
was a tenth of what a submit cost the API. They reach Flower up to ``FLUSH_AFTER_S`` later, as
a worker's own task events do (``workers.celery.events``); nothing in workyard waits for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import timedelta
from functools import cached_property
from typing import Any, Protocol

from celery import Celery
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from config import tracing
from config.settings import Settings
from models.base import utcnow
from models.tables import OUTBOX, OutboxMessage
from orchestrator.storage.db import SessionFactory, reading
from orchestrator.storage.pipeline import select_in_turn
from orchestrator.storage.unit_of_work import uow_of
from workers.broker.publish import SentEvents, publish_dispatch
from workers.broker.reports import ReportQueue, report_queue

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
# The idle sweep's statement, built once (building it cost as much as running it).
_ANY_LEFT = (
    select(OUTBOX.c.id).where(OUTBOX.c.created_at <= bindparam("cutoff", type_=OUTBOX.c.created_at.type)).limit(1)
)
# How long published rows may wait for a transaction to delete them before one is opened, and
# the task-sent events of their dispatches before they are sent.
FLUSH_AFTER_S = 0.2


def _batched(producer: Any, messages: int) -> AbstractContextManager[Any]:
    """One broker round trip for a whole batch where the transport can (kombu 5.7+ on Redis).
    A single message (a submit's first step) goes as it is: a batch of one is the same round
    trip with a pipeline's bookkeeping around it."""
    batch = getattr(producer, "batch", None)
    return batch() if batch is not None and messages > 1 else nullcontext()


def _publish_spans(rows: Sequence[Publishable], stack: ExitStack) -> None:
    """A span for each traced message going out, open until the batch is published: in its saga's
    trace, after the span that wrote it to the outbox (the gap between them is the outbox's lag)."""
    for row in rows:
        body = row.payload.get("body")
        if not isinstance(body, dict) or body.get("traceparent") is None:
            continue
        traceparent = body["traceparent"]
        attributes = {"workyard.saga_id": str(body.get("saga_id")), "messaging.destination.name": row.queue}
        stack.enter_context(
            tracing.span(
                "outbox publish", kind=tracing.PRODUCER, parent=traceparent, attributes=attributes, current=False
            )
        )


class Publishable(Protocol):
    """An outbox row: its id, the queue it goes to, and what to send."""

    @property
    def id(self) -> int: ...
    @property
    def queue(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


class Dispatcher:
    """Publishes committed outbox rows to the broker and deletes each once the broker has taken it."""

    def __init__(self, app: Celery, sessions: SessionFactory, settings: Settings):
        self.app = app
        self.sessions = sessions
        self.settings = settings
        self.copies = 2 if settings.fault_duplicate_delivery else 1
        self._published: list[int] = []
        self._lock = threading.Lock()
        self._flush_timer: threading.Timer | None = None
        # The task-sent events of what was published since the last flush.
        self._sent_events: list[Any] = []
        # Every timer started and maybe still flushing (one that fired is no longer _flush_timer).
        self._timers: list[threading.Timer] = []

    @cached_property
    def _reports(self) -> ReportQueue:
        return report_queue(self.app.connection_for_write())

    @cached_property
    def _event_dispatcher(self) -> Any:
        return SentEvents.dispatcher_for(self.app)

    def publish(self, rows: Sequence[Publishable]) -> None:
        """Publish rows whose transaction has committed; they are deleted soon after.

        A crash before the deletion leaves the rows in place and the sweep publishes them
        again, so a dispatch may arrive twice; workers dedup it.
        """
        if not rows:
            return
        spans = ExitStack()
        if tracing.enabled():
            _publish_spans(rows, spans)
        sent_events = SentEvents(self._event_dispatcher)
        with spans, self.app.producer_or_acquire() as producer, _batched(producer, len(rows) * self.copies):
            for row in rows:
                payload = row.payload
                for _ in range(self.copies):
                    if payload.get("kind") == "report":
                        # A work item ended: the saga waiting on it hears it as a step report.
                        self._reports.send(producer, [payload["body"]])
                        continue
                    publish_dispatch(
                        self.app,
                        producer,
                        row.queue,
                        payload["body"],
                        task_id=payload["task_id"],
                        shadow=payload["shadow"],
                        timeout_ms=payload.get("timeout_ms"),
                        grace_s=self.settings.watchdog_grace_s,
                        sent_events=sent_events,
                    )
        with self._lock:
            self._sent_events += sent_events.take()
            self._published.extend(r.id for r in rows)
            if self._flush_timer is None:
                timer = threading.Timer(FLUSH_AFTER_S, self.flush)
                timer.daemon = True
                self._flush_timer = timer
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
                timer.start()

    def delete_published(self, session: Session) -> None:
        """Delete published rows inside the caller's transaction, as it commits."""
        with self._lock:
            ids, self._published = self._published, []
        uow_of(session).forget_published(ids)

    def flush(self) -> None:
        """Send the gathered task-sent events, and delete published rows, now (in a transaction
        of their own)."""
        with self._lock:
            self._flush_timer = None
            events, self._sent_events = self._sent_events, []
        if events:
            self._send_events(events)
        if not self._published:
            return
        try:
            with self.sessions.begin() as session:
                self.delete_published(session)
        except Exception:
            # The rows stay; the sweep re-publishes them and workers dedup the duplicates.
            log.exception("deleting published outbox rows failed")

    def close(self) -> None:
        """Stop the flush timers, then flush what is left. A timer that already fired is waited
        for: its flush holds a pooled connection, which closing the engine next would strand
        open (closed by no one, collected some time later)."""
        with self._lock:
            timers, self._timers, self._flush_timer = self._timers, [], None
        for timer in timers:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()
        if self._published or self._sent_events:
            self.flush()

    def _send_events(self, events: list[Any]) -> None:
        try:
            with self.app.producer_or_acquire() as producer:
                SentEvents(self._event_dispatcher, events).send(producer)
        except Exception as exc:
            # The tasks went out: only Flower's view of them being sent is lost.
            log.warning("could not send %d task-sent event(s): %s", len(events), exc)

    def sweep(self) -> int:
        """Re-publish rows left unpublished for longer than ``outbox_sweep_after_s``."""
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_sweep_after_s)
        with self._lock:
            pending = set(self._published)
        with reading(self.sessions) as session:
            # The idle sweep: one read, without SQLite's write lock that the batch below takes.
            if not select_in_turn(session, [(_ANY_LEFT, {"cutoff": cutoff})])[0]:
                return 0
        with self.sessions.begin() as session:
            rows = [
                r
                for r in session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.created_at <= cutoff)
                    .order_by(OutboxMessage.id)
                    .limit(SWEEP_BATCH)
                    .with_for_update(skip_locked=True)
                )
                if r.id not in pending
            ]
            if not rows:
                return 0
            # Push them into the future so another sweeper does not take them meanwhile.
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))
                .values(created_at=utcnow(), publish_count=OutboxMessage.publish_count + 1)
            )
        log.info("re-publishing %d outbox message(s) left unconfirmed", len(rows))
        self.publish(rows)
        return len(rows)
