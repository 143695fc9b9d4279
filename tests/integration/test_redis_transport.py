"""The Redis transport workyard installs: one synchronous client per channel, on a real Redis
(``redis://`` or the embedded ``redis+socket://``), and messages still go through."""

from __future__ import annotations

from kombu import Connection

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
