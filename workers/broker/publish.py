"""Publishing to the broker: step dispatches (as Celery task messages) and reports.

Both go through the broker's default exchange, addressed by queue name: on Redis that skips
kombu's exchange-binding lookup (a round trip per message), on RabbitMQ the default exchange
routes by queue name all the same. The queues are still declared (once per connection).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery import Celery
from kombu.entity import Queue

from config import keys
from workers.broker import internals
from workers.celery.config import capability_queue, orchestrator_queue

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = ""
_QUEUES: dict[str, Queue] = {}
# The queues declared on each broker connection. kombu caches declarations too, but only after
# binding a copy of the queue to the channel (and, with retry, wrapping the call) on every
# publish: ~0.2 ms each. A queue is declared once per connection here; a connection kombu
# re-establishes keeps its declarations (durable queues on RabbitMQ; Redis needs none to
# publish to a queue by name).
_DECLARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _queue(name: str) -> Queue:
    queue = _QUEUES.get(name)
    if queue is None:
        if name == keys.ORCHESTRATOR_QUEUE:
            queue = orchestrator_queue()
        elif name.startswith(keys.CAPABILITY_QUEUE_PREFIX):
            queue = capability_queue(name[len(keys.CAPABILITY_QUEUE_PREFIX) :])
        else:
            raise ValueError(f"workyard publishes only to its own queues, not {name!r}")
        _QUEUES[name] = queue
    return queue


def publish_reports(app: Celery, bodies: Iterable[dict[str, Any]], *, copies: int = 1) -> None:
    """Send reports to the orchestrator queue as plain JSON messages."""
    with app.producer_or_acquire() as producer:
        for body in bodies:
            for _ in range(copies):
                publish_report(producer, body)


def _declare(producer: Any, queue: Queue) -> list[Queue]:
    """``[queue]`` the first time it is published to on the producer's connection, else ``[]``
    (not None: Celery's send_task declares the queue again when given None)."""
    declared = _DECLARED.setdefault(producer.connection, set())
    if queue.name in declared:
        return []
    declared.add(queue.name)
    return [queue]


def publish_report(producer: Any, body: dict[str, Any]) -> None:
    """One report to the orchestrator queue on an open producer."""
    queue = _queue(keys.ORCHESTRATOR_QUEUE)
    producer.publish(
        body,
        exchange=DEFAULT_EXCHANGE,
        routing_key=queue.name,
        declare=_declare(producer, queue),
        serializer="json",
        delivery_mode=2,
        retry=True,
    )


class ReportRenderer:
    """Renders a report as the broker message kombu would push for it: (list key, payload)."""

    def __init__(self, connection: Any, render: Callable[[Any, str], tuple[str, str] | None]):
        self.connection = connection
        self._render = render

    def __call__(self, body: dict[str, Any]) -> tuple[str, str]:
        message = self._render(body, keys.ORCHESTRATOR_QUEUE)
        assert message is not None  # checked when built; the channel's options do not change
        return message

    def close(self) -> None:
        self.connection.release()


def report_renderer(app: Celery, store_client: redis.Redis) -> ReportRenderer | None:
    """Where the broker is the Redis server and database the worker keeps its dedup store in (the
    embedded default, and any deployment that points both at one Redis): a renderer of reports as
    the broker messages kombu would push, so that the Lua script storing a step's outcome sends
    its report in the same round trip (see ``workers.store``). None elsewhere (a broker of its
    own, RabbitMQ): reports are then published as usual.

    Rendering needs no network, only kombu's channel code; the channel is opened once per process.
    """
    connection = app.connection_for_write()
    try:
        channel = connection.default_channel
        render = getattr(channel, "render_put", None)
        # None from render_put: kombu would do more than one LPUSH here.
        if (
            render is not None
            and _server(channel.client) == _server(store_client)
            and render({}, keys.ORCHESTRATOR_QUEUE) is not None
        ):
            return ReportRenderer(connection, render)
    except Exception as exc:
        log.warning("reports will be published on their own: cannot render them for Redis (%s)", exc)
    connection.release()
    return None


def _server(client: Any) -> tuple[Any, ...]:
    """Which Redis server and database a client talks to."""
    kwargs = client.connection_pool.connection_kwargs
    where = (kwargs["path"],) if kwargs.get("path") else (kwargs.get("host"), int(kwargs.get("port") or 6379))
    return (*where, int(kwargs.get("db") or 0))


class SentEvents:
    """The task-sent events (for Flower) of dispatches published together, sent as one message.

    Celery's ``send_task`` publishes a task's task-sent event as a message of its own, through the
    event dispatcher it is given: as this one, it only gathers them. :meth:`send` then publishes
    them as Celery's ``task.multi`` (a list of events, as a worker's batched task events travel,
    which Flower reads): one message per batch of dispatches instead of one per dispatch.
    """

    def __init__(self, dispatcher: Any):
        self._dispatcher = dispatcher
        self._events: list[Any] = []

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

    def send(self, producer: Any) -> None:
        events, self._events = self._events, []
        if not events:
            return
        try:
            internals.publish_events(self._dispatcher, events, producer, "task.multi")
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
        declare=_declare(producer, queue),
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
