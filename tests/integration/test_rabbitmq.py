"""The same spine with RabbitMQ as the broker (Redis keeps only leases and dedup), and the report
queue's contract against RabbitMQ (test_redis_transport.py runs it against Redis)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest
from kombu.connection import Connection

from tests.integration.harness import Harness, dead_lettered, running_harness, still_working
from tests.integration.report_queue_contract import ReportQueueContract
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, need
from workers.broker.reports import KombuReportQueue
from workers.celery.config import capability_queue, orchestrator_queue

AMQP_URL = os.environ.get("WORKYARD_TEST_RABBITMQ_URL")


def _rabbitmq_url() -> str:
    """WORKYARD_TEST_RABBITMQ_URL, if it answers (a test needing it skips, or fails in CI)."""
    if not AMQP_URL:
        need("RabbitMQ", "set WORKYARD_TEST_RABBITMQ_URL")
    assert AMQP_URL is not None
    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        need("RabbitMQ", f"{AMQP_URL} does not answer: {exc}")
    return AMQP_URL


class TestReportQueueOnRabbitMQ(ReportQueueContract):
    implementation = KombuReportQueue
    renders = False

    @pytest.fixture
    def broker_url(self) -> str:
        return _rabbitmq_url()


@pytest.fixture(scope="module")
def rabbit_harness(redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    if not AMQP_URL:
        need("RabbitMQ", "set WORKYARD_TEST_RABBITMQ_URL")
    assert AMQP_URL is not None
    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            for queue in (orchestrator_queue(), capability_queue("alpha"), capability_queue("beta")):
                queue(conn.default_channel).declare()
                queue(conn.default_channel).purge()
    except Exception as exc:
        need("RabbitMQ", f"{AMQP_URL} does not answer: {exc}")
    tmp: Path = tmp_path_factory.mktemp("rabbit")
    with running_harness("sqlite", tmp, redis_target, [THREE_STEPS], broker_url=AMQP_URL) as harness:
        yield harness


def test_happy_path_over_rabbitmq(rabbit_harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga = rabbit_harness.wait_final(rabbit_harness.submit("it.three", {"tag": tag}))
    assert saga.state == "completed"
    assert rabbit_harness.effects(tag) == ["one", "two", "three"]


def test_compensation_over_rabbitmq(rabbit_harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga = rabbit_harness.wait_final(
        rabbit_harness.submit(
            "it.three",
            {
                "tag": tag,
                "behaviour": {"three": {"fail_always": True, "retryable": False}, "two:compensate": {"fail_times": 1}},
            },
        )
    )
    assert saga.state == "compensated"
    assert rabbit_harness.effects(tag) == ["one", "two", "two:compensate", "one:compensate"]


# Raw publishes nobody should make: each carries the marker to find its dead letter by.
RAW_PUBLISHES: dict[str, tuple[str | None, bytes]] = {
    "not-json": ("application/json", b"\x00\xffnot json "),
    "unknown-content-type": ("application/x-garbage", b"whatever "),
    "no-properties": (None, b"no properties at all "),
}


@pytest.mark.parametrize("kind", list(RAW_PUBLISHES))
@pytest.mark.parametrize("queue", [capability_queue("alpha").name, orchestrator_queue().name])
def test_garbage_over_rabbitmq_is_dead_lettered_and_the_consumer_carries_on(
    rabbit_harness: Harness, queue: str, kind: str
) -> None:
    marker = uuid.uuid4().hex
    content_type, body = RAW_PUBLISHES[kind]
    properties = {"content_type": content_type, "content_encoding": "binary"} if content_type else {}
    assert AMQP_URL is not None
    with Connection(AMQP_URL) as conn:
        conn.default_channel.basic_publish(amqp.Message(body + marker.encode(), **properties), "", queue)

    source, reason = dead_lettered(rabbit_harness, marker)
    assert source == queue
    assert reason, reason
    still_working(rabbit_harness, marker)


def test_a_task_nobody_registered_over_rabbitmq_is_dead_lettered(rabbit_harness: Harness) -> None:
    marker = uuid.uuid4().hex
    queue = capability_queue("alpha")
    rabbit_harness.wiring.app.send_task("workyard.no_such_task", args=[marker], queue=queue, routing_key=queue.name)

    source, reason = dead_lettered(rabbit_harness, marker)
    assert source == queue.name and "workyard.no_such_task" in reason, (source, reason)
    still_working(rabbit_harness, marker)
