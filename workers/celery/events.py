"""The worker's Celery consumer: task events in batches, refused messages dead-lettered.

A workyard worker sends Celery's task events (received, started, succeeded...) so that Flower
can show every step. Celery buffers them per worker, but asks its event loop to flush the
buffer at the next tick, so a worker running one short step at a time sends one broker message
per event: three per step, each a round trip to the broker. This consumer flushes at most every
``EVENT_FLUSH_S`` instead, so a step's events travel together (as Celery's ``task.multi``, which
Flower reads), and a busy worker sends one message for many steps. Celery still flushes at
once when the buffer holds its limit, raised here to ``EVENT_BUFFER_LIMIT`` events.

Why so seldom: the flush runs in the worker's main process, the one process that takes every
dispatch off the broker, holds it, hands it to a pool process and acknowledges it, one message
after another. Each flush (an event list through kombu's producer, a PUBLISH) is main-process
CPU that no dispatch is picked up during; at 150 steps a second a 50 ms window made 20 flushes
a second, and on a busy host, where the main process falls behind, more (each window then
catches fewer events). The main process's CPU per step is what decides when it falls behind
(the dispatches then wait in their queue: ``bench/saga_throughput.py`` splits that wait out).

Events reach Flower up to ``EVENT_FLUSH_S`` later; nothing in workyard waits for them.

A message on a capability queue that Celery refuses (no task in it, a task nobody registered, a
body that does not decode, a content type not accepted) Celery only logs and discards. This
consumer sends it to the orchestrator as a dead letter, with the reason and the queue, and then
acknowledges it (invariant 7: a malformed message is kept with its reason, never retried forever).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.message import Message

from models.messages import DeadLetterReport
from models.problems import body_text
from workers.broker import internals
from workers.broker.reports import ReportQueue, report_queue

log = logging.getLogger(__name__)

EVENT_FLUSH_S = 0.25
# Celery flushes at once when this many events are buffered (its default: 24, eight steps).
EVENT_BUFFER_LIMIT = 240


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's worker consumer, flushing buffered task events on a short timer and
    dead-lettering the messages it refuses."""

    _event_flush_armed = False
    _reports: ReportQueue | None = None

    # Celery's hooks for what it refuses (it logs, rejects, and forgets).
    def on_unknown_message(self, body: Any, message: Message) -> None:
        self._dead_letter(message, "not a task message: no task name in its headers or body")

    def on_unknown_task(self, body: Any, message: Message, exc: BaseException) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        self._dead_letter(message, f"unknown task {headers.get('task')!r}: no task of that name on this worker")

    def on_invalid_task(self, body: Any, message: Message, exc: BaseException) -> None:
        self._dead_letter(message, f"refused task: {type(exc).__name__}: {exc}")

    def on_decode_error(self, message: Message, exc: BaseException) -> None:
        self._dead_letter(message, f"undecodable task body ({message.content_type}): {type(exc).__name__}: {exc}")

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Send ``message`` to the orchestrator as a dead letter, then acknowledge it. If it
        cannot be sent, it goes back to its queue (the broker is likely away: the consumer
        reconnects and meets it again)."""
        info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
        source = str(info.get("routing_key") or "unknown queue")
        log.warning("dead-lettering a message from %s: %s", source, reason)
        letter = DeadLetterReport(source=source, reason=reason, body=body_text(message.body))
        try:
            if self._reports is None:
                # Only a template connection: nothing connects before the first send.
                self._reports = report_queue(self.app.connection_for_write())
            with self.app.producer_or_acquire() as producer:
                self._reports.send(producer, [letter.model_dump(mode="json")])
        except self.connection_errors:
            # The broker is away: the message goes back, and the consumer meets it again once
            # it reconnected.
            log.warning("could not dead-letter a message from %s (broker away); it goes back to its queue", source)
            message.reject_log_error(log, self.connection_errors, requeue=True)  # type: ignore[no-untyped-call]
            return
        except Exception:
            # Anything else would fail again on every redelivery: drop it, loudly, rather than loop.
            log.exception("could not dead-letter a message from %s; dropping it", source)
        message.ack_log_error(log, self.connection_errors)  # type: ignore[no-untyped-call]

    def on_send_event_buffered(self) -> None:
        # Celery calls this (its name is in internals.REQUIRED_PRIVATE_NAMES) for each buffered event.
        if self.hub is None or self._event_flush_armed:
            return
        dispatcher = getattr(self, "event_dispatcher", None)
        if dispatcher is not None:
            # Celery builds the dispatcher anew on each (re)connection, with its own limit.
            dispatcher.buffer_limit = EVENT_BUFFER_LIMIT
        self._event_flush_armed = True
        self.hub.call_later(EVENT_FLUSH_S, self._flush_events_armed)

    def _flush_events_armed(self) -> None:
        self._event_flush_armed = False
        internals.flush_task_events(self)

    def stop(self) -> None:
        self._flush_before_closing()
        super().stop()

    def shutdown(self) -> None:
        self._flush_before_closing()
        super().shutdown()

    def _flush_before_closing(self) -> None:
        # The event loop will not run the armed flush any more; send what is buffered now.
        try:
            internals.flush_task_events(self)
        except Exception as exc:  # the broker may be what is going away
            log.debug("could not flush task events while stopping: %s", exc)
