"""The worker's Celery consumer, sending task events in batches.

A workyard worker sends Celery's task events (received, started, succeeded...) so that Flower
can show every step. Celery buffers them per worker, but asks its event loop to flush the
buffer at the next tick, so a worker running one short step at a time sends one broker message
per event: three per step, each a round trip to the broker. This consumer flushes at most every
``EVENT_FLUSH_S`` instead, so a step's events travel together (as Celery's ``task.multi``, which
Flower reads), and a busy worker sends one message for many steps. Celery still flushes at
once when the buffer holds ``buffer_limit`` events.

Events reach Flower up to ``EVENT_FLUSH_S`` later; nothing in workyard waits for them.
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer

from workers.broker import internals

log = logging.getLogger(__name__)

EVENT_FLUSH_S = 0.05


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's worker consumer, flushing buffered task events on a short timer."""

    _event_flush_armed = False

    def on_send_event_buffered(self) -> None:
        # Celery calls this (its name is in internals.REQUIRED_PRIVATE_NAMES) for each buffered event.
        if self.hub is None or self._event_flush_armed:
            return
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
