"""The outbox dispatcher: publishes committed outbox rows and re-publishes unconfirmed ones."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from celery import Celery
from sqlalchemy import delete, select, update

from config.settings import Settings
from models.base import utcnow
from models.tables import OutboxMessage
from orchestrator.db import SessionFactory
from workers.publish import publish_dispatch

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


class Dispatcher:
    def __init__(self, app: Celery, sessions: SessionFactory, settings: Settings):
        self.app = app
        self.sessions = sessions
        self.settings = settings
        self.copies = 2 if settings.fault_duplicate_delivery else 1

    def publish(self, rows: Sequence[OutboxMessage]) -> None:
        """Publish rows whose transaction has committed, then drop them from the outbox.

        A crash between the two leaves the rows in place and the sweep publishes them again,
        so a dispatch may arrive twice; workers dedup it.
        """
        if not rows:
            return
        with self.app.producer_or_acquire() as producer:
            for row in rows:
                payload = row.payload
                for _ in range(self.copies):
                    publish_dispatch(self.app, producer, row.queue, payload["body"], task_id=payload["task_id"],
                                     shadow=payload["shadow"], timeout_ms=payload.get("timeout_ms"),
                                     grace_s=self.settings.watchdog_grace_s)
        with self.sessions.begin() as session:
            session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows])))

    def sweep(self) -> int:
        """Re-publish rows left unpublished for longer than ``outbox_sweep_after_s``."""
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_sweep_after_s)
        with self.sessions.begin() as session:
            rows = list(session.scalars(
                select(OutboxMessage).where(OutboxMessage.created_at <= cutoff)
                .order_by(OutboxMessage.id).limit(SWEEP_BATCH).with_for_update(skip_locked=True)))
            if not rows:
                return 0
            # Push them into the future so another sweeper does not take them meanwhile.
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows]))
                            .values(created_at=utcnow(), publish_count=OutboxMessage.publish_count + 1))
        log.info("re-publishing %d outbox message(s) left unconfirmed", len(rows))
        self.publish(rows)
        return len(rows)
