"""The Redis transport workyard installs: one synchronous client per channel, on a real Redis
(``redis://`` or the embedded ``redis+socket://``), and messages still go through."""

from __future__ import annotations

import json
from typing import Any

from kombu import Connection
from kombu.message import Message

from config import redis_transport
from config.celery_config import capability_queue
from tests.support import RedisTarget


def test_a_channel_keeps_one_client_and_renews_it_with_its_pool(redis_target: RedisTarget) -> None:
    with Connection(redis_target.broker_url) as conn:
        channel = conn.default_channel
        assert isinstance(channel, redis_transport.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        channel._disconnect_pools()  # what kombu does after a connection error
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool


def test_messages_still_round_trip(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-check")
    with Connection(redis_target.broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()
        with conn.Producer() as producer:
            for n in range(3):
                producer.publish({"n": n}, exchange="", routing_key=queue.name, serializer="json")
        got = []
        while (message := bound.get(no_ack=False)) is not None:
            got.append(message.payload["n"])
            message.ack()
        assert sorted(got) == [0, 1, 2]
        assert bound.get() is None  # acknowledged, not redelivered


def test_a_batch_is_acknowledged_in_one_round_trip(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-acks")
    client = redis_target.client()
    with Connection(redis_target.broker_url) as conn:
        channel = conn.default_channel
        bound = queue(channel)
        bound.declare()
        bound.purge()
        received: list[Message] = []

        def publish(count: int) -> None:
            with conn.Producer() as producer:
                for n in range(count):
                    producer.publish({"n": n}, exchange="", routing_key=queue.name, serializer="json")

        # As the orchestrator consumes: a prefetch window the size of its batch.
        with conn.Consumer(
            [queue], callbacks=[lambda _body, message: received.append(message)], accept=["json"], prefetch_count=5
        ):
            publish(5)
            while len(received) < 5:
                conn.drain_events(timeout=5)
            tags = {m.delivery_tag for m in received}
            assert tags <= {t.decode() for t in client.hkeys(channel.unacked_key)}  # held until acknowledged

            before = client.info("commandstats").get("cmdstat_zrem", {}).get("calls", 0)
            redis_transport.ack_all(received)
            after = client.info("commandstats").get("cmdstat_zrem", {}).get("calls", 0)
            assert after - before == 1  # one ZREM (in one pipeline) for the five of them
            assert not tags & {t.decode() for t in client.hkeys(channel.unacked_key)}
            assert not tags & {t.decode() for t in client.zrange(channel.unacked_index_key, 0, -1)}

            # The window is free again: the next five arrive.
            publish(5)
            while len(received) < 10:
                conn.drain_events(timeout=5)
            redis_transport.ack_all(received[5:])
    with Connection(redis_target.broker_url) as conn:
        assert queue(conn.default_channel).get() is None  # none comes back


def test_a_rendered_message_is_the_one_kombu_would_push(redis_target: RedisTarget) -> None:
    """A worker's finish script pushes reports rendered by render_put: they must be exactly what
    kombu's producer pushes (bar the delivery tag, a fresh uuid each), and consumable by kombu."""
    queue = capability_queue("transport-render")
    client = redis_target.client()
    body = {"kind": "step_report", "saga_id": "s1", "result": {"é": [1, 2.5, None]}}
    with Connection(redis_target.broker_url) as conn:
        channel = conn.default_channel
        bound = queue(channel)
        bound.declare()
        bound.purge()
        with conn.Producer() as producer:
            producer.publish(body, exchange="", routing_key=queue.name, serializer="json", delivery_mode=2)
        (published,) = client.lrange(queue.name, 0, -1)
        rendered = channel.render_put(body, queue.name)
        assert rendered is not None
        key, payload = rendered

        def untagged(raw: str | bytes) -> dict[str, Any]:
            message = json.loads(raw)
            assert message["properties"].pop("delivery_tag")
            return dict(message)

        assert key == queue.name
        assert untagged(payload) == untagged(published)

        bound.purge()
        client.lpush(key, payload)
        message = bound.get(no_ack=True)
        assert message is not None and message.payload == body
