"""Consumes ``workyard.orchestrator`` in batches and hands them to the coordinator.

Messages are acknowledged only after the batch's transaction committed; a crash before that
redelivers them, and the coordinator drops what it already applied (invariant 2).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from kombu.message import Message

from orchestrator.service.coordinator import Coordinator
from orchestrator.storage.db import is_transient
from workers.broker.reports import ReportQueue, report_queue

log = logging.getLogger(__name__)

# How long one wait for a report lasts: only how soon an idle consumer notices it should stop.
FIRST_WAIT_S = 1.0
RECONNECT_PAUSE_S = 1.0


class ReportConsumer:
    """Receives reports from the report queue in batches, has the coordinator apply each batch in
    one transaction, then acknowledges it (or gives it back, or dead-letters what breaks it)."""

    def __init__(self, app: Celery, coordinator: Coordinator, *, batch: int, stop: threading.Event):
        self.app = app
        self.coordinator = coordinator
        self.batch = batch
        self.stop = stop
        self._pending: list[tuple[Any, Message]] = []
        # Chosen from the transport of the broker reports are read from (nothing connects here).
        self.reports: ReportQueue = report_queue(app.connection_for_read())

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._consume()
            except Exception:
                if self.stop.is_set():
                    return
                log.exception("report consumer lost its connection; reconnecting")
                self.stop.wait(RECONNECT_PAUSE_S)

    def _consume(self) -> None:
        # What was gathered on a connection that broke was never acknowledged: the broker
        # delivers it again on this one. Applying the leftovers too would apply them twice.
        self._pending.clear()
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=None, interval_start=0.5, interval_max=5)
            with self.reports.consumer(conn, self._on_message, batch=self.batch, on_decode_error=self._on_decode_error):
                while not self.stop.is_set():
                    if self._gather(conn):
                        self._flush()

    def _gather(self, conn: Any) -> bool:
        """Wait up to FIRST_WAIT_S for a report, then take only what has already arrived, up to
        a batch. A lone report is applied at once; reports that arrive while a batch is applied
        wait for it and make the next batch together, so batches grow with the load and never
        with a wait of their own (waiting for company cost a paced saga half its latency)."""
        try:
            conn.drain_events(timeout=FIRST_WAIT_S)
        except TimeoutError:  # socket.timeout is the same class
            return False
        while len(self._pending) < self.batch:
            try:
                # Reads what the connection already holds; does not wait for more.
                conn.drain_events(timeout=self.reports.arrived_wait_s)
            except TimeoutError:
                break
        return True

    def _on_message(self, body: Any, message: Message) -> None:
        self._pending.append((body, message))

    def _on_decode_error(self, message: Message, exc: Exception) -> None:
        log.warning("dead-lettering an undecodable report: %s", exc)
        self.coordinator.dead_letter(message.body, f"undecodable message ({message.content_type}): {exc}")
        self.reports.acknowledge([message])

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self.coordinator.handle([body for body, _ in pending])
        except Exception as exc:
            if is_transient(exc):
                log.warning("a batch of %d report(s) goes back to the queue: %s", len(pending), exc)
                self._requeue([message for _, message in pending])
                return
            log.exception("a batch of %d report(s) failed; applying them one by one", len(pending))
            for body, message in pending:
                self._one(body, message)
            return
        self.reports.acknowledge([message for _, message in pending])

    def _one(self, body: Any, message: Message) -> None:
        try:
            self.coordinator.handle([body])
        except Exception as exc:
            if is_transient(exc):
                # The database is away, or this transaction lost a deadlock: not the message's fault.
                log.warning("report goes back to the queue after a transient error: %s", exc)
                self._requeue([message])
                return
            try:
                # This message alone breaks the batch: keep it with the reason, do not loop on it.
                self.coordinator.dead_letter(body, f"report could not be applied: {type(exc).__name__}: {exc}")
            except Exception:
                log.exception("cannot reach the database; the report goes back to the queue")
                self._requeue([message])
                return
        self.reports.acknowledge([message])

    def _requeue(self, messages: list[Message]) -> None:
        """Give messages back to the broker and pause, so a database outage is not a busy loop."""
        self.reports.requeue(messages)
        time.sleep(RECONNECT_PAUSE_S)
