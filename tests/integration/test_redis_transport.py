"""The Redis transport workyard installs, on a real Redis (``redis://`` or the embedded
``redis+socket://``): one synchronous client per channel, messages still go through, and the
report queue's fast path (a batch per round trip, held as kombu holds a delivery; acknowledged in
one round trip). The report queue's contract runs here against Redis, and in test_rabbitmq.py
against RabbitMQ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message
from kombu.transport import redis as kombu_redis

from tests.faults.servers import RedisServer
from tests.integration.report_queue_contract import ReportQueueContract
from tests.support import RedisTarget, as_text, eventually, redis_target_from_url
from workers.broker import internals
from workers.broker import redis as redis_transport
from workers.broker.reports import RedisReportQueue, ReportQueue, report_queue
from workers.celery.config import capability_queue


class TestReportQueueOnRedis(ReportQueueContract):
    implementation = RedisReportQueue
    renders = True

    @pytest.fixture
    def broker_url(self, redis_target: RedisTarget) -> str:
        return redis_target.broker_url


def _empty(queue: Queue, channel: Any) -> Any:
    """``queue`` declared on ``channel``, with nothing in it."""
    bound = queue(channel)
    bound.declare()
    bound.purge()
    return bound


def _collecting(conn: Connection, queue: Queue, received: list[Message], batch: int) -> tuple[ReportQueue, Any]:
    """The report queue on ``queue``, and a consumer of it that appends what it receives to
    ``received``, as the orchestrator gathers a batch."""
    reports = report_queue(conn, queue)
    consumer = reports.consumer(
        conn, lambda _body, message: received.append(message), batch=batch, on_decode_error=_undecodable
    )
    return reports, consumer


def _holding(conn: Connection, queue: Queue, count: int) -> tuple[ReportQueue, Any, list[Message]]:
    """A batch consumer of ``queue`` (emptied first) that has received, and holds unacknowledged,
    ``count`` messages published to it."""
    _empty(queue, conn.default_channel)
    received: list[Message] = []
    reports, consumer = _collecting(conn, queue, received, 10)
    consumer.consume()
    _publish(conn, queue.name, count)
    conn.drain_events(timeout=5)
    assert len(received) == count
    return reports, consumer, received


def _undecodable(message: Message, exc: Exception) -> None:
    raise AssertionError(f"every message sent here decodes: {exc}")


def _publish(conn: Connection, queue_name: str, count: int, first: int = 0) -> None:
    with conn.Producer() as producer:
        for n in range(first, first + count):
            producer.publish({"n": n}, exchange="", routing_key=queue_name, serializer="json")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisTarget]:
    """A redis-server of the test's own, for tests that count round trips in its command
    statistics: those are server-wide, and the suite's Redis serves other test workers too."""
    server = RedisServer(tmp_path / "redis", appendfsync=None)
    server.start()
    try:
        yield redis_target_from_url(server.url(0))
    finally:
        server.stop()


def _calls(client: Any, command: str) -> int:
    """How many times the server ran ``command``: count only on a Redis of the test's own."""
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_channel_keeps_one_client_and_renews_it_with_its_pool(redis_target: RedisTarget) -> None:
    with Connection(redis_target.broker_url) as conn:
        channel = conn.default_channel
        assert isinstance(channel, redis_transport.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        internals.disconnect_pools(channel)  # what kombu does after a connection error
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool


def test_messages_still_round_trip(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-check")
    with Connection(redis_target.broker_url) as conn:
        bound = _empty(queue, conn.default_channel)
        _publish(conn, queue.name, 3)
        got = []
        while (message := bound.get(no_ack=False)) is not None:
            got.append(message.payload["n"])
            message.ack()
        assert sorted(got) == [0, 1, 2]
        assert bound.get() is None  # acknowledged, not redelivered


def test_a_batch_is_acknowledged_in_one_round_trip(own_redis: RedisTarget) -> None:
    queue = capability_queue("transport-acks")
    client = own_redis.client()
    with Connection(own_redis.broker_url) as conn:
        channel = conn.default_channel
        _empty(queue, channel)
        received: list[Message] = []

        # As the orchestrator consumes: a prefetch window the size of its batch.
        reports, consumer = _collecting(conn, queue, received, 5)
        with consumer:
            _publish(conn, queue.name, 5)
            while len(received) < 5:
                conn.drain_events(timeout=5)
            tags = {m.delivery_tag for m in received}
            assert tags <= {as_text(t) for t in client.hkeys(channel.unacked_key)}  # held until acknowledged

            before = _calls(client, "zrem")
            reports.acknowledge(received)
            assert _calls(client, "zrem") - before == 1  # one ZREM (in one pipeline) for the five of them
            assert not tags & {as_text(t) for t in client.hkeys(channel.unacked_key)}
            assert not tags & {as_text(t) for t in client.zrange(channel.unacked_index_key, 0, -1)}

            # The window is free again: the next five arrive.
            _publish(conn, queue.name, 5)
            while len(received) < 10:
                conn.drain_events(timeout=5)
            reports.acknowledge(received[5:])
    with Connection(own_redis.broker_url) as conn:
        assert queue(conn.default_channel).get() is None  # none comes back


def test_a_rendered_message_is_the_one_kombu_would_push(redis_target: RedisTarget) -> None:
    """A worker's finish script pushes reports rendered by render_put: they must be exactly what
    kombu's producer pushes (bar the delivery tag, a fresh uuid each), and consumable by kombu."""
    queue = capability_queue("transport-render")
    client = redis_target.client()
    body = {"kind": "step_report", "saga_id": "s1", "result": {"é": [1, 2.5, None]}}
    with Connection(redis_target.broker_url) as conn:
        channel = conn.default_channel
        bound = _empty(queue, channel)
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


def test_a_consumer_receiving_in_batches_takes_many_per_round_trip(own_redis: RedisTarget) -> None:
    queue = capability_queue("transport-batches")
    client = own_redis.client()
    with Connection(own_redis.broker_url) as conn:
        channel = conn.default_channel
        _empty(queue, channel)
        received: list[Message] = []
        reports, consumer = _collecting(conn, queue, received, 5)
        with consumer:
            _publish(conn, queue.name, 7)
            brpops, multis = _calls(client, "brpop"), _calls(client, "multi")
            conn.drain_events(timeout=5)
            # One BRPOP brought one message and the script the next four: the prefetch window.
            assert [m.payload["n"] for m in received] == [0, 1, 2, 3, 4]
            assert _calls(client, "brpop") - brpops == 1
            assert _calls(client, "multi") - multis == 1  # kombu's own record of the first one
            assert client.llen(queue.name) == 2

            # Each is held as kombu holds a delivery: [message, exchange, routing key] by tag.
            held = {as_text(k): json.loads(v) for k, v in client.hgetall(channel.unacked_key).items()}
            indexed = {as_text(t) for t in client.zrange(channel.unacked_index_key, 0, -1)}
            for message in received:
                raw, exchange, routing_key = held[message.delivery_tag]
                assert raw["properties"]["delivery_tag"] == message.delivery_tag
                assert (exchange, routing_key) == ("", queue.name)
                assert message.delivery_tag in indexed

            reports.acknowledge(received)
            assert not {m.delivery_tag for m in received} & {as_text(t) for t in client.hkeys(channel.unacked_key)}
            while len(received) < 7:
                conn.drain_events(timeout=5)
            assert [m.payload["n"] for m in received] == list(range(7))
            reports.acknowledge(received[5:])
    with Connection(own_redis.broker_url) as conn:
        assert queue(conn.default_channel).get() is None


def test_messages_taken_in_a_batch_come_back_if_their_consumer_dies(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-batch-restore")
    # No visibility timeout to wait for: any unacknowledged delivery is due back. (Not 1 ms: the
    # batch's records are a fraction of a millisecond younger than kombu's record of the first
    # message, and a fast run would restore that one alone.)
    options = {"visibility_timeout": 0}
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        _reports, consumer, received = _holding(conn, queue, 6)
        # The consumer dies: its unacknowledged deliveries stay recorded in Redis, and nothing
        # restores them at shutdown.
        consumer.channel.qos.restore_at_shutdown = False
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        channel = conn.default_channel
        channel.qos.restore_visible(num=100)
        got = []
        while (message := queue(channel).get(no_ack=False)) is not None:
            got.append(message.payload["n"])
            message.ack()
        assert sorted(got) == list(range(6))  # each once, none lost


def test_a_batch_leaves_a_message_without_a_delivery_tag_where_it_was(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-batch-junk")
    client = redis_target.client()
    with Connection(redis_target.broker_url) as conn:
        bound = _empty(queue, conn.default_channel)
        received: list[Message] = []
        reports, consumer = _collecting(conn, queue, received, 10)
        with consumer:
            _publish(conn, queue.name, 2)
            client.lpush(queue.name, '{"body": "not a kombu message"}')
            _publish(conn, queue.name, 1, first=2)
            conn.drain_events(timeout=5)
            assert [m.payload["n"] for m in received] == [0, 1]
            # The odd one and the one behind it are back in the list, in their order.
            assert [json.loads(raw).get("body") for raw in client.lrange(queue.name, 0, -1)][::-1][0] == (
                "not a kombu message"
            )
            assert client.llen(queue.name) == 2
            reports.acknowledge(received)
        bound.purge()


def test_a_redis_that_refuses_the_batch_pop_is_read_one_message_at_a_time(redis_target: RedisTarget) -> None:
    queue = capability_queue("transport-batch-refused")
    with Connection(redis_target.broker_url) as conn:
        _empty(queue, conn.default_channel)
        received: list[Message] = []
        reports, consumer = _collecting(conn, queue, received, 10)
        with consumer:
            channel = consumer.channel
            assert channel.receive_batch == 9
            # What a Redis before 6.2 answers to RPOP with a count, before popping anything.
            with channel.conn_or_acquire() as client:
                channel._pop_script = client.register_script(
                    "return redis.error_reply('ERR wrong number of arguments for \\'rpop\\' command')"
                )
            _publish(conn, queue.name, 3)
            while len(received) < 3:
                conn.drain_events(timeout=5)
            assert [m.payload["n"] for m in received] == [0, 1, 2]  # none lost, in order
            assert channel.receive_batch == 0
            reports.acknowledge(received)
    with Connection(redis_target.broker_url) as conn:
        assert queue(conn.default_channel).get() is None


def test_a_worker_whose_store_is_another_redis_database_gets_no_renderer(redis_target: RedisTarget) -> None:
    """Its finish script could not push to the broker's lists: its reports are sent instead."""
    store = redis_target.client()
    kwargs = store.connection_pool.connection_kwargs
    other_db = {**kwargs, "db": int(kwargs.get("db") or 0) + 1}
    elsewhere = type(store)(connection_pool=type(store.connection_pool)(**other_db))
    with Connection(redis_target.broker_url) as conn:
        reports = report_queue(conn)
        assert reports.renderer(elsewhere) is None
        renderer = reports.renderer(store)
        assert renderer is not None
        renderer.close()


def test_messages_a_live_consumer_holds_are_renewed_and_not_given_back(redis_target: RedisTarget) -> None:
    """Held past the visibility timeout, by a consumer that is alive: a sweep finds nothing due,
    because the keeper re-scored what it holds. Once renewals stop (the process died), the same
    sweep gives them back."""
    queue = capability_queue("transport-held-renewed")
    client = redis_target.client()
    options = {"visibility_timeout": 2}
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        _reports, consumer, received = _holding(conn, queue, 3)
        qos = consumer.channel.qos
        index = qos.unacked_index_key
        tags = [m.delivery_tag for m in received]
        first_scores = [client.zscore(index, tag) or 0.0 for tag in tags]
        # Three visibility timeouts later, each still held, and scored later than it was delivered.
        eventually(
            lambda: all((client.zscore(index, t) or 0) > s + 4 for t, s in zip(tags, first_scores, strict=True)),
            timeout=15,
            what="the held messages to be renewed",
        )
        with Connection(redis_target.broker_url, transport_options=options) as other:
            other.default_channel.qos.restore_visible(num=100)
        assert client.llen(queue.name) == 0, "a sweep gave back messages a live consumer holds"
        # The consumer stops renewing (as a dead process would) and stops restoring at shutdown.
        qos.renew_held = lambda: 0
        qos.restore_at_shutdown = False
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        channel = conn.default_channel

        def given_back() -> int:
            channel.qos.restore_visible(num=100)
            return int(client.llen(queue.name))

        eventually(lambda: given_back() == 3, timeout=15, what="the dead consumer's messages to come back")
        queue(channel).purge()


def _junk_envelope(tag: str) -> str:
    """A kombu envelope with a delivery tag the batch pop reads, whose body is not the base64 it
    says it is (bad padding): kombu's Message would raise on it."""
    return json.dumps(
        {
            "body": "abcde",
            "headers": {},
            "content-type": "application/json",
            "properties": {"delivery_tag": tag, "body_encoding": "base64", "delivery_info": {"routing_key": "x"}},
        }
    )


def _letters(channel: Any, queue_name: str) -> list[dict[str, Any]]:
    letters = []
    while (message := Queue(queue_name, routing_key=queue_name)(channel).get()) is not None:
        letters.append(message.payload)
        message.ack()
    return letters


@pytest.mark.parametrize("batch", [1, 10], ids=["one-by-one", "batched"])
def test_garbage_is_dead_lettered_and_the_messages_around_it_arrive_in_order(
    redis_target: RedisTarget, batch: int
) -> None:
    queue = capability_queue(f"transport-garbage-{batch}")
    dead = f"test.dead-letters-{batch}"
    client = redis_target.client()
    client.delete(dead)
    with Connection(redis_target.broker_url) as conn:
        _empty(queue, conn.default_channel)
        received: list[Message] = []
        reports, consumer = _collecting(conn, queue, received, batch)
        assert isinstance(consumer.channel, redis_transport.Channel)
        consumer.channel.dead_letter_queue = dead
        with consumer:
            _publish(conn, queue.name, 1)
            client.lpush(queue.name, b"\x00\xffnot json")
            _publish(conn, queue.name, 1, first=1)
            client.lpush(queue.name, _junk_envelope("junk-tag"))
            client.lpush(queue.name, b"[1, 2, 3]")
            _publish(conn, queue.name, 1, first=2)
            while len(received) < 3:
                conn.drain_events(timeout=5)  # garbage delivers nothing: the loop drains again
                if unacknowledged := [m for m in received if not m.acknowledged]:
                    reports.acknowledge(unacknowledged)
            assert [m.payload["n"] for m in received] == [0, 1, 2]
            letters = eventually(lambda: len(got := _letters(conn.default_channel, dead)) == 3 and got, what="3")
        assert [(letter["kind"], letter["source"]) for letter in letters] == [("dead_letter", queue.name)] * 3
        assert [letter["reason"].split(" (")[0] for letter in letters] == [
            "undecodable message: not UTF-8",
            "undecodable message: body does not decode as 'base64'",
            "undecodable message: not a kombu message",
        ]
        assert letters[0]["body"] == "\\x00\\xffnot json"
        # Nothing stays held for the garbage the batch pop took.
        assert client.hget(consumer.channel.unacked_key, "junk-tag") is None
        assert client.llen(queue.name) == 0


def test_a_closed_channels_messages_are_not_renewed(redis_target: RedisTarget) -> None:
    """A channel closed while it held messages it could not give back (its connection was lost,
    Redis was down) must not keep renewing them: the consumer carries on in a new channel, and
    only the sweep can bring those messages back."""
    queue = capability_queue("transport-held-closed")
    client = redis_target.client()
    options = {"visibility_timeout": 2}
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        _reports, consumer, received = _holding(conn, queue, 2)
        consumer.channel.qos.restore_at_shutdown = False  # as if Redis were down as it closed
        consumer.channel.close()
        with Connection(redis_target.broker_url, transport_options=options) as other:
            channel = other.default_channel

            def given_back() -> int:
                channel.qos.restore_visible(num=100)
                return int(client.llen(queue.name))

            eventually(lambda: given_back() == 2, timeout=15, what="the closed channel's messages to come back")
            queue(channel).purge()


def test_a_process_whose_clock_runs_ahead_does_not_give_back_what_others_hold(
    redis_target: RedisTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holders score and sweepers compare on Redis's clock: a sweeper an hour ahead finds nothing
    due among messages a live consumer took a moment ago."""
    queue = capability_queue("transport-held-skewed")
    client = redis_target.client()
    options = {"visibility_timeout": 15}
    with Connection(redis_target.broker_url, transport_options=options) as conn:
        _reports, consumer, received = _holding(conn, queue, 3)
        consumer.channel.qos.renew_held()  # every held message scored on Redis's clock
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        monkeypatch.setattr(kombu_redis, "time", lambda: real() + 3600)  # kombu's own binding
        with Connection(redis_target.broker_url, transport_options=options) as skewed:
            skewed.default_channel.qos.restore_visible(num=100)
        monkeypatch.undo()
        assert client.llen(queue.name) == 0, "a sweeper whose clock runs ahead gave back live consumers' messages"
        _reports.acknowledge(received)


def test_a_consumer_draining_without_an_event_loop_sweeps_about_once_a_second(own_redis: RedisTarget) -> None:
    """The orchestrator's report consumer drains its connection (no event loop), and kombu asks
    for a sweep for messages to give back after every poll that found nothing: at 150 reports a
    second that was 150 sweeps (four round trips each) where one a second is what recovery needs.
    A sweep runs at most every half ``unacked_restore_interval``; asked again later, it runs."""
    queue = capability_queue("transport-sweep-throttle")
    client = own_redis.client()
    options = {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    with Connection(own_redis.broker_url, transport_options=options) as conn:
        _empty(queue, conn.default_channel)
        _reports, consumer = _collecting(conn, queue, [], 10)
        with consumer:
            before = _calls(client, "time")
            started = time.monotonic()
            for _ in range(100):
                with pytest.raises(TimeoutError):
                    conn.drain_events(timeout=0)
            elapsed = time.monotonic() - started
            swept = _calls(client, "time") - before
            # The first poll sweeps; a slow host may reach the next half second, and sweep again.
            assert 1 <= swept <= 1 + int(elapsed / 0.5), f"{swept} sweeps in {elapsed:.2f} s of 100 polls"
            time.sleep(0.6)
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0)
            assert _calls(client, "time") - before == swept + 1, "asked again after half a second: no sweep"
