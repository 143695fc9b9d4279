"""The report queue: the one way step reports travel to the orchestrator, and are received there.

Workers send the reports of the steps they ran; the dispatcher sends, as reports, the outbox rows
of kind ``report`` (a work item ended, and the saga waiting on it hears it as a step report); the
orchestrator's report consumer receives them in batches, applies a batch in one transaction and
then acknowledges it, or gives it back to the broker.

:func:`report_queue` picks the implementation from a connection's transport:

- :class:`RedisReportQueue` (workyard's Redis transport, ``workers.broker.redis``): a consumer
  takes a batch with every message BRPOP hands it, holding them unacknowledged as kombu would; a
  batch is acknowledged in one round trip; and a worker whose dedup store is the broker's Redis
  gets a :class:`ReportRenderer`, so the Lua script storing a step's outcome (``workers.store``)
  pushes its report in the same round trip.
- :class:`KombuReportQueue` (RabbitMQ, or any other kombu transport): a message per delivery,
  acknowledged one by one; reports are published as usual.

Both publish a report the same way: plain JSON, persistent, through the default exchange to the
queue by name (see ``workers.broker.publish``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import redis
from kombu.entity import Queue
from kombu.message import Message

from workers.broker.publish import DEFAULT_EXCHANGE, declare_once
from workers.broker.redis import Channel as RedisChannel
from workers.broker.redis import Transport as RedisTransport
from workers.celery.config import orchestrator_queue

log = logging.getLogger(__name__)

# What a consumer calls with each report it receives (the decoded body and its message), and
# with a message whose body does not decode.
OnReport = Callable[[Any, Message], None]
OnDecodeError = Callable[[Message, Exception], None]


class ReportQueue(Protocol):
    """The one way reports travel from workers (and from outbox rows of kind ``report``) to the
    orchestrator, and are received there. The producer side sends; the consumer side receives
    in batches, acknowledges a batch once it is applied, or gives messages back."""

    @property
    def queue(self) -> Queue:
        """The queue reports travel on (``workyard.orchestrator`` unless a test names its own)."""
        ...

    @property
    def arrived_wait_s(self) -> float:
        """The timeout of a connection's drain that takes what has already arrived, without
        waiting for more (the consumer makes its batches so)."""
        ...

    def send(self, producer: Any, bodies: Iterable[dict[str, Any]], *, copies: int = 1) -> None:
        """Publish reports (JSON bodies) on an open producer, each ``copies`` times in a row."""
        ...

    def renderer(self, store_client: redis.Redis) -> ReportRenderer | None:
        """Where the broker is the Redis server and database ``store_client`` talks to: a renderer
        of reports as the broker messages to push with the step's outcome. None elsewhere."""
        ...

    def consumer(self, connection: Any, on_report: OnReport, *, batch: int, on_decode_error: OnDecodeError) -> Any:
        """A kombu consumer of the queue on ``connection`` with a prefetch window of ``batch``,
        taking up to ``batch`` messages per round trip where the transport can. Use it as a
        context manager and drain the connection's events."""
        ...

    def acknowledge(self, messages: Sequence[Message]) -> None:
        """Acknowledge received messages: they will not be delivered again."""
        ...

    def requeue(self, messages: Sequence[Message]) -> None:
        """Give received messages back to the broker, to be delivered again."""
        ...


def report_queue(connection: Any, queue: Queue | None = None) -> ReportQueue:
    """The report queue for ``connection``'s transport. Neither connects nor builds the transport
    (kombu's Redis transport opens a poller when built); the connection is kept only as a
    template, which a renderer clones."""
    queue = queue if queue is not None else orchestrator_queue()
    if issubclass(connection.get_transport_cls(), RedisTransport):
        return RedisReportQueue(connection, queue)
    return KombuReportQueue(connection, queue)


class KombuReportQueue:
    """The report queue on any kombu transport (RabbitMQ in production): a message per delivery,
    acknowledged and requeued one by one, as kombu does."""

    # The timeout of a drain that takes only what has already arrived. Not zero: py-amqp reads
    # the rest of a frame that arrived in part in a busy loop on a non-blocking socket (until it
    # comes); a timeout, however short, makes it give up and keep the part for the next drain.
    arrived_wait_s = 0.0005

    def __init__(self, connection: Any, queue: Queue):
        self._connection = connection
        self._queue = queue

    @property
    def queue(self) -> Queue:
        return self._queue

    def send(self, producer: Any, bodies: Iterable[dict[str, Any]], *, copies: int = 1) -> None:
        for body in bodies:
            for _ in range(copies):
                producer.publish(
                    body,
                    exchange=DEFAULT_EXCHANGE,
                    routing_key=self._queue.name,
                    declare=declare_once(producer, self._queue),
                    serializer="json",
                    delivery_mode=2,
                    retry=True,
                )

    def renderer(self, store_client: redis.Redis) -> ReportRenderer | None:
        return None  # the broker is not a Redis the worker's scripts can push to

    def consumer(self, connection: Any, on_report: OnReport, *, batch: int, on_decode_error: OnDecodeError) -> Any:
        return connection.Consumer(
            [self._queue],
            callbacks=[on_report],
            accept=["json"],
            on_decode_error=on_decode_error,
            prefetch_count=batch,
        )

    def acknowledge(self, messages: Sequence[Message]) -> None:
        for message in messages:
            message.ack()  # type: ignore[no-untyped-call]

    def requeue(self, messages: Sequence[Message]) -> None:
        for message in messages:
            message.requeue()  # type: ignore[no-untyped-call]


class RedisReportQueue(KombuReportQueue):
    """The report queue on workyard's Redis transport: batches received and acknowledged in one
    round trip each, and reports pushed by the worker's Lua script with the step's outcome."""

    # A poll of the sockets that does not wait: a BRPOP's reply is read whole.
    arrived_wait_s = 0.0

    def renderer(self, store_client: redis.Redis) -> ReportRenderer | None:
        # Rendering needs no network, only kombu's channel code; the channel is opened once per
        # process and kept by the renderer.
        connection = self._connection.clone()
        try:
            channel = connection.default_channel
            # None from render_put: kombu would do more than one LPUSH here.
            if (
                isinstance(channel, RedisChannel)
                and redis_server(channel.client) == redis_server(store_client)
                and channel.render_put({}, self._queue.name) is not None
            ):
                return ReportRenderer(connection, channel, self._queue.name)
        except Exception as exc:
            log.warning("reports will be published on their own: cannot render them for Redis (%s)", exc)
        connection.release()
        return None

    def consumer(self, connection: Any, on_report: OnReport, *, batch: int, on_decode_error: OnDecodeError) -> Any:
        consumer = super().consumer(connection, on_report, batch=batch, on_decode_error=on_decode_error)
        if isinstance(consumer.channel, RedisChannel):
            # A stream of reports arrives a batch per round trip, not one message per two.
            consumer.channel.receive_batch = max(0, batch - 1)
        return consumer

    def acknowledge(self, messages: Sequence[Message]) -> None:
        # One round trip for a batch received on one channel of this transport. kombu's own
        # ack costs as much for a single message, and marks it acknowledged.
        channel = messages[0].channel if len(messages) > 1 else None
        if not isinstance(channel, RedisChannel) or any(m.channel is not channel or m.acknowledged for m in messages):
            super().acknowledge(messages)
            return
        channel.basic_ack_many([m.delivery_tag for m in messages])


class ReportRenderer:
    """Renders a report as the broker message kombu would push for it, (list key, payload), for
    the worker's Lua script to push with the step's outcome. Holds a broker connection of its
    own until :meth:`close`."""

    def __init__(self, connection: Any, channel: RedisChannel, queue_name: str):
        self.connection = connection
        self._channel = channel
        self._queue_name = queue_name

    def __call__(self, body: dict[str, Any]) -> tuple[str, str]:
        message = self._channel.render_put(body, self._queue_name)
        assert message is not None  # checked when built; the channel's options do not change
        return message

    def close(self) -> None:
        self.connection.release()


def redis_server(client: Any) -> tuple[Any, ...]:
    """Which Redis server and database a client talks to."""
    kwargs = client.connection_pool.connection_kwargs
    where = (kwargs["path"],) if kwargs.get("path") else (kwargs.get("host"), int(kwargs.get("port") or 6379))
    return (*where, int(kwargs.get("db") or 0))
