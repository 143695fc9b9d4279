"""What every :class:`~workers.broker.reports.ReportQueue` does, whatever the broker.

A test module per broker subclasses :class:`ReportQueueContract` and provides the ``broker_url``
fixture (``test_redis_transport.py``, ``test_rabbitmq.py``). Each test sends, receives,
acknowledges and requeues on a queue of its own, deleted afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message

from tests.support import RedisTarget
from workers.broker.reports import KombuReportQueue, ReportQueue, report_queue

DRAIN_S = 5.0


class Received:
    """Reports a consumer received, with their messages, in order."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.messages: list[Message] = []

    def __call__(self, body: Any, message: Message) -> None:
        self.bodies.append(body)
        self.messages.append(message)


def undecodable(message: Message, exc: Exception) -> None:
    raise AssertionError(f"every report sent here decodes: {exc}")


def drain_until(conn: Connection, received: Received, count: int) -> None:
    """Drain the connection's events until ``count`` reports arrived in all."""
    while len(received.bodies) < count:
        conn.drain_events(timeout=DRAIN_S)


def nothing_more_arrives(conn: Connection, received: Received) -> bool:
    before = len(received.bodies)
    try:
        conn.drain_events(timeout=0.3)
    except TimeoutError:
        pass
    return len(received.bodies) == before


class ReportQueueContract:
    """The report queue's behaviour, run against each broker. ``implementation`` is the class
    :func:`report_queue` must pick for that broker; ``renders`` whether a worker whose store is
    the test Redis gets a renderer there (only where that Redis is the broker)."""

    implementation: type[KombuReportQueue]
    renders: bool

    @pytest.fixture
    def broker_url(self) -> str:
        raise NotImplementedError("a broker's test module provides broker_url")

    @pytest.fixture
    def conn(self, broker_url: str) -> Iterator[Connection]:
        with Connection(broker_url) as conn:
            conn.ensure_connection(max_retries=3)
            yield conn

    @pytest.fixture
    def queue(self, broker_url: str) -> Iterator[Queue]:
        name = f"wy-test.reports.{uuid.uuid4().hex[:12]}"
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        yield queue
        with Connection(broker_url) as conn:
            queue(conn.default_channel).delete()
            queue.exchange(conn.default_channel).delete()

    @pytest.fixture
    def reports(self, conn: Connection, queue: Queue) -> ReportQueue:
        return report_queue(conn, queue)

    def send(self, reports: ReportQueue, conn: Connection, bodies: list[dict[str, Any]], copies: int = 1) -> None:
        with conn.Producer() as producer:
            reports.send(producer, bodies, copies=copies)

    def test_the_implementation_follows_the_transport(self, reports: ReportQueue) -> None:
        assert type(reports) is self.implementation

    def test_sent_reports_arrive_in_order_and_once_acknowledged_stay_gone(
        self, reports: ReportQueue, conn: Connection, queue: Queue, broker_url: str
    ) -> None:
        bodies = [{"kind": "step_report", "n": n, "text": "é"} for n in range(7)]
        received = Received()
        with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
            self.send(reports, conn, bodies)
            drain_until(conn, received, len(bodies))
            assert received.bodies == bodies
            reports.acknowledge(received.messages)
        with Connection(broker_url) as again:
            assert queue(again.default_channel).get() is None

    def test_each_report_goes_out_as_often_as_told(self, reports: ReportQueue, conn: Connection) -> None:
        received = Received()
        with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
            self.send(reports, conn, [{"n": 1}, {"n": 2}], copies=2)
            drain_until(conn, received, 4)
            assert received.bodies == [{"n": 1}, {"n": 1}, {"n": 2}, {"n": 2}]
            reports.acknowledge(received.messages)

    def test_no_more_than_a_batch_is_held_unacknowledged(self, reports: ReportQueue, conn: Connection) -> None:
        received = Received()
        with reports.consumer(conn, received, batch=3, on_decode_error=undecodable):
            self.send(reports, conn, [{"n": n} for n in range(5)])
            drain_until(conn, received, 3)
            assert nothing_more_arrives(conn, received)
            reports.acknowledge(received.messages)
            drain_until(conn, received, 5)  # the window is free again
            assert [b["n"] for b in received.bodies] == list(range(5))
            reports.acknowledge(received.messages[3:])

    def test_a_drain_for_what_has_arrived_takes_it_and_does_not_wait(
        self, reports: ReportQueue, conn: Connection
    ) -> None:
        # The orchestrator's consumer takes a batch this way: after the first report, only what
        # has already arrived (orchestrator.service.consumer). An empty queue must answer with
        # the timeout the consumer expects, on every broker, not block or raise anything else.
        wait = reports.arrived_wait_s
        assert wait < 0.001
        received = Received()
        with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=wait)
            self.send(reports, conn, [{"n": n} for n in range(5)])
            drain_until(conn, received, 1)
            deadline = 200  # drains of what has arrived, each without waiting for more
            while len(received.bodies) < 5 and deadline:
                deadline -= 1
                try:
                    conn.drain_events(timeout=wait)
                except TimeoutError:
                    time.sleep(0.01)  # the rest is still on its way from the broker
            assert [b["n"] for b in received.bodies] == list(range(5))
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=wait)
            reports.acknowledge(received.messages)

    def test_a_single_report_is_acknowledged_too(
        self, reports: ReportQueue, conn: Connection, queue: Queue, broker_url: str
    ) -> None:
        received = Received()
        with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
            self.send(reports, conn, [{"n": 1}])
            drain_until(conn, received, 1)
            reports.acknowledge(received.messages)
        with Connection(broker_url) as again:
            assert queue(again.default_channel).get() is None

    def test_requeued_reports_are_delivered_again(self, reports: ReportQueue, conn: Connection) -> None:
        received = Received()
        with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
            self.send(reports, conn, [{"n": n} for n in range(3)])
            drain_until(conn, received, 3)
            reports.requeue(received.messages)
            drain_until(conn, received, 6)
            assert sorted(b["n"] for b in received.bodies[3:]) == [0, 1, 2]
            reports.acknowledge(received.messages[3:])

    def test_reports_not_acknowledged_come_back_when_their_consumer_goes(
        self, reports: ReportQueue, broker_url: str, queue: Queue
    ) -> None:
        bodies = [{"n": n} for n in range(4)]
        with Connection(broker_url) as conn:
            received = Received()
            with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
                self.send(reports, conn, bodies)
                drain_until(conn, received, len(bodies))
            # Closed with all four received and none acknowledged.
        with Connection(broker_url) as conn:
            received = Received()
            with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
                drain_until(conn, received, len(bodies))
                assert sorted(b["n"] for b in received.bodies) == list(range(4))  # each once, none lost
                assert nothing_more_arrives(conn, received)
                reports.acknowledge(received.messages)

    def test_a_report_rendered_for_the_workers_push_arrives_as_if_sent(
        self, reports: ReportQueue, conn: Connection, redis_target: RedisTarget
    ) -> None:
        store = redis_target.client()
        renderer = reports.renderer(store)
        if not self.renders:
            assert renderer is None  # the broker is not the store's Redis: reports are sent
            return
        assert renderer is not None
        try:
            body = {"kind": "step_report", "saga_id": "s1", "result": {"é": [1, 2.5, None]}}
            received = Received()
            with reports.consumer(conn, received, batch=10, on_decode_error=undecodable):
                key, payload = renderer(body)
                store.lpush(key, payload)  # as the worker's finish script does
                drain_until(conn, received, 1)
                assert received.bodies == [body]
                reports.acknowledge(received.messages)
        finally:
            renderer.close()
