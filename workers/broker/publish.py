"""Publishing to the broker: step dispatches (as Celery task messages); reports travel through
``workers.broker.reports`` and declare their queue with :func:`declare_once`.

Both go through the broker's default exchange, addressed by queue name: on Redis that skips
kombu's exchange-binding lookup (a round trip per message), on RabbitMQ the default exchange
routes by queue name all the same. The queues are still declared (once per connection).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from celery import Celery
from kombu.entity import Queue

from config import keys
from workers.broker import internals
from workers.celery.config import capability_queue

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = ""
_QUEUES: dict[str, Queue] = {}
# Task-sent events are only Flower's view: a broker that is away (or gone, as the embedded stack
# stops its Redis along with the API) gets a few tries over about half a second, not kombu's
# default of trying for ever, which would hold up a process that is stopping.
EVENT_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}
# The queues declared on each broker connection. kombu caches declarations too, but only after
# binding a copy of the queue to the channel (and, with retry, wrapping the call) on every
# publish: ~0.2 ms each. A queue is declared once per connection here; a connection kombu
# re-establishes keeps its declarations (durable queues on RabbitMQ; Redis needs none to
# publish to a queue by name).
_DECLARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _queue(name: str) -> Queue:
    queue = _QUEUES.get(name)
    if queue is None:
        if name.startswith(keys.CAPABILITY_QUEUE_PREFIX):
            queue = capability_queue(name[len(keys.CAPABILITY_QUEUE_PREFIX) :])
        else:
            raise ValueError(f"dispatches go to capability queues only, not {name!r}")
        _QUEUES[name] = queue
    return queue


def declare_once(producer: Any, queue: Queue) -> list[Queue]:
    """``[queue]`` the first time it is published to on the producer's connection, else ``[]``
    (not None: Celery's send_task declares the queue again when given None)."""
    declared = _DECLARED.setdefault(producer.connection, set())
    if queue.name in declared:
        return []
    declared.add(queue.name)
    return [queue]


class SentEvents:
    """The task-sent events (for Flower) of dispatches published together, sent as one message.

    Celery's ``send_task`` publishes a task's task-sent event as a message of its own, through the
    event dispatcher it is given: as this one, it only gathers them. :meth:`send` then publishes
    them as Celery's ``task.multi`` (a list of events, as a worker's batched task events travel,
    which Flower reads): one message per batch of dispatches instead of one per dispatch. A
    publisher may also :meth:`take` them, to send those of many batches together later.
    """

    def __init__(self, dispatcher: Any, events: list[Any] | None = None):
        self._dispatcher = dispatcher
        self._events: list[Any] = list(events or [])

    @classmethod
    def dispatcher_for(cls, app: Celery) -> Any:
        """An event dispatcher to build and publish events with, shared by many SentEvents; it
        opens no connection of its own (it publishes on the producer it is given)."""
        dispatcher = app.events.Dispatcher(enabled=False)
        dispatcher.buffer_while_offline = False  # nothing would ever flush that buffer
        return dispatcher

    def publish(self, type: str, fields: dict[str, Any], producer: Any, **_options: Any) -> None:
        """What ``send_task`` calls for each task it sends."""
        self._events.append(internals.prepare_event(self._dispatcher, type, fields))

    def take(self) -> list[Any]:
        """The events gathered so far (prepared, each stamped when its task was sent), handed over
        once."""
        events, self._events = self._events, []
        return events

    def send(self, producer: Any) -> None:
        events = self.take()
        if not events:
            return
        try:
            internals.publish_events(self._dispatcher, events, producer, "task.multi", EVENT_RETRY_POLICY)
        except Exception as exc:
            # The tasks went out: only Flower's view of them being sent is lost.
            log.warning("could not send %d task-sent event(s): %s", len(events), exc)


def publish_dispatch(
    app: Celery,
    producer: Any,
    queue_name: str,
    body: dict[str, Any],
    *,
    task_id: str,
    shadow: str,
    timeout_ms: int | None,
    grace_s: int,
    sent_events: SentEvents | None = None,
) -> None:
    """Send one step dispatch as the Celery task ``workyard.step`` on its capability queue.
    With ``sent_events``, its task-sent event waits there to be sent with others."""
    queue = _queue(queue_name)
    soft = hard = None
    if timeout_ms is not None:
        soft = timeout_ms / 1000
        hard = soft + max(1, grace_s)
    app.send_task(
        keys.STEP_TASK,
        args=[body],
        task_id=task_id,
        queue=queue,
        exchange=DEFAULT_EXCHANGE,
        routing_key=queue.name,
        declare=declare_once(producer, queue),
        producer=producer,
        shadow=shadow,
        # Celery would saferepr() the whole dispatch for Flower; a short summary is more useful
        # there and costs nothing on the hot path.
        argsrepr=(
            f"saga={body.get('saga_id')} step={body.get('step')} {body.get('phase')} attempt={body.get('attempt')}"
        ),
        kwargsrepr="{}",
        soft_time_limit=soft,
        time_limit=hard,
        retry=True,
        **({"event_dispatcher": sent_events} if sent_events is not None else {}),
    )
