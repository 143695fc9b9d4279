"""kombu's Redis transport, with one synchronous Redis client per channel and acknowledgements
in bulk.

kombu's Redis channel builds a new ``redis.Redis`` client for every publish, every
acknowledgement and every event it sends (``Channel.conn_or_acquire``), and building one
(its table of response callbacks) costs about 0.15 ms of CPU: several times per saga step, in the
worker, the orchestrator and whoever submits. The client only wraps the channel's connection
pool, and a ``redis.Redis`` is safe to share between threads, so this channel keeps one. It is
rebuilt if the channel's pool is replaced (after a connection error).

A worker's report can travel in the same round trip as the outcome it reports:
:meth:`Channel.render_put` gives the list key and payload kombu itself would LPUSH for a message,
and the worker's Lua script that stores the outcome pushes it (see ``workers.publish``).

kombu acknowledges a message with a round trip of its own (removing it from the channel's
``unacked`` hash and index). :func:`ack_all` acknowledges a batch in one, as the orchestrator does
after each committed batch of reports; on other transports it acknowledges one by one.

:func:`install` points the ``redis`` transport alias (``redis://``, ``redis+socket://``) here;
every other transport is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu import serialization
from kombu.message import Message
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json


class QoS(kombu_redis.QoS):
    def ack_many(self, delivery_tags: Sequence[str]) -> None:
        """Acknowledge deliveries in one round trip (kombu's ``ack`` takes one per delivery)."""
        with self.pipe_or_acquire() as pipe:
            pipe.zrem(self.unacked_index_key, *delivery_tags).hdel(self.unacked_key, *delivery_tags).execute()
        for tag in delivery_tags:
            # Counted against the prefetch window until kombu hears it was acknowledged.
            virtual.QoS.ack(self, tag)  # type: ignore[no-untyped-call]


class Channel(kombu_redis.Channel):
    QoS = QoS
    _sync_client: Any = None

    def basic_ack_many(self, delivery_tags: Sequence[str]) -> None:
        if delivery_tags:
            self.qos.ack_many(delivery_tags)

    def render_put(self, body: Any, routing_key: str) -> tuple[str, str] | None:
        """The list key and the payload that publishing ``body`` (JSON, persistent, through the
        default exchange to queue ``routing_key``) would LPUSH, made by kombu's own code, as
        ``Producer.publish`` and ``_put`` do. None where that publish would do more than one
        LPUSH (a global key prefix, a queue that expires)."""
        if self.global_keyprefix or routing_key in (self._expires or {}):
            return None
        kombu: Any = self  # kombu's channel API carries no annotations
        serialize: Any = serialization.dumps
        encode: Any = kombu_json.dumps
        content_type, content_encoding, data = serialize(body, serializer="json")
        message = kombu.prepare_message(data, 0, content_type, content_encoding, {}, {"delivery_mode": 2})
        kombu._inplace_augment_message(message, "", routing_key)
        key = kombu._q_for_pri(routing_key, kombu._get_message_priority(message, reverse=False))
        return key, str(encode(message))

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The BRPOP/pub-sub clients have their own pool and lifecycle in kombu: untouched.
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client(asynchronous=False)  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def ack_all(messages: Sequence[Message]) -> None:
    """Acknowledge received messages: in one round trip when they share a channel of this
    transport, else one by one."""
    channel = messages[0].channel if messages else None
    ack_many = getattr(channel, "basic_ack_many", None)
    if ack_many is None or any(m.channel is not channel or m.acknowledged for m in messages):
        for message in messages:
            message.ack()  # type: ignore[no-untyped-call]
        return
    ack_many([m.delivery_tag for m in messages])


def install() -> None:
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
