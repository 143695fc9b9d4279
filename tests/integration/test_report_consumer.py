"""The orchestrator's report consumer on a real broker and database: what it held when its
connection broke is not applied again on the next connection (the broker redelivers it)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.tables import DeadLetter
from orchestrator.service.consumer import ReportConsumer
from orchestrator.service.wiring import Wiring
from tests.integration.harness import database_wiring
from tests.support import RedisTarget, consistently, eventually
from workers.celery.config import orchestrator_queue


@pytest.fixture
def wiring(tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring("sqlite", tmp_path, clean_redis) as built:
        yield built


def _letters(wiring: Wiring, marker: str) -> int:
    with wiring.sessions() as session:
        return session.scalar(select(func.count()).where(DeadLetter.body.contains(marker))) or 0


def test_a_batch_pending_when_the_connection_broke_is_applied_once(wiring: Wiring) -> None:
    marker = uuid.uuid4().hex
    malformed = {"kind": "step_report", "saga_id": marker}  # no step: dead-lettered when applied
    queue = orchestrator_queue()
    with wiring.app.connection_for_write() as conn:
        with conn.Producer() as producer:
            producer.publish(malformed, exchange="", routing_key=queue.name, serializer="json", declare=[queue])
    stop = threading.Event()
    consumer = ReportConsumer(wiring.app, wiring.coordinator, batch=10, stop=stop)
    # The consumer had gathered the report when its connection broke: the report was never
    # acknowledged, so the broker delivers it again on the next connection.
    with wiring.app.connection_for_read() as lost:
        message = queue(lost.default_channel).get(no_ack=False)  # type: ignore[no-untyped-call]
        assert message is not None
        consumer._pending.append((message.payload, message))
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: _letters(wiring, marker) >= 1, what="the report to be dead-lettered")
        consistently(lambda: _letters(wiring, marker) == 1, duration=1.5, what="one dead letter")
    finally:
        stop.set()
        thread.join(timeout=10)
