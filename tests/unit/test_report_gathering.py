"""How the orchestrator's report consumer makes a batch: a lone report is applied at once, and a
batch holds only what had already arrived, so batches grow with the load, never with a wait."""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from orchestrator.service.consumer import FIRST_WAIT_S, ReportConsumer


class Message:
    def __init__(self, body: Any) -> None:
        self.body = body


class Connection:
    """A broker connection as the consumer drains it: ``arrived`` are reports already on the
    connection; each of ``arriving`` arrives while a drain waits, if it waits a millisecond or
    more (a report that comes sooner than that after another is as good as arrived with it)."""

    def __init__(self, consumer: ReportConsumer, arrived: list[Any], arriving: list[Any]) -> None:
        self.consumer = consumer
        self.arrived = arrived
        self.arriving = arriving
        self.timeouts: list[float | None] = []

    def drain_events(self, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)
        if self.arrived:
            body = self.arrived.pop(0)
        elif self.arriving and (timeout is None or timeout >= 0.001):
            body = self.arriving.pop(0)
        else:
            raise TimeoutError
        self.consumer._on_message(body, Message(body))  # type: ignore[arg-type]


def consumer(batch: int = 10) -> ReportConsumer:
    # Built without connecting: a consumer needs its broker only when it runs.
    return ReportConsumer(Celery(broker="redis://127.0.0.1:1/0"), None, batch=batch, stop=threading.Event())  # type: ignore[arg-type]


def pending(c: ReportConsumer) -> list[Any]:
    return [body for body, _ in c._pending]


def test_a_lone_report_makes_a_batch_without_waiting_for_the_next() -> None:
    c = consumer()
    conn = Connection(c, arrived=["a"], arriving=["b"])
    assert c._gather(conn)
    assert pending(c) == ["a"]
    assert conn.arriving == ["b"]  # left for the next batch, not waited for


def test_a_batch_takes_everything_that_has_arrived() -> None:
    c = consumer()
    conn = Connection(c, arrived=["a", "b", "c"], arriving=["d"])
    assert c._gather(conn)
    assert pending(c) == ["a", "b", "c"]


def test_a_batch_stops_at_its_size() -> None:
    c = consumer(batch=2)
    conn = Connection(c, arrived=["a", "b", "c"], arriving=[])
    assert c._gather(conn)
    assert pending(c) == ["a", "b"]


def test_with_nothing_arriving_the_first_wait_times_out_and_makes_no_batch() -> None:
    c = consumer()
    conn = Connection(c, arrived=[], arriving=[])
    assert not c._gather(conn)
    assert pending(c) == []
    assert conn.timeouts == [FIRST_WAIT_S]


def test_the_first_report_is_waited_for() -> None:
    c = consumer()
    conn = Connection(c, arrived=[], arriving=["a", "b"])
    assert c._gather(conn)
    assert pending(c) == ["a"]
