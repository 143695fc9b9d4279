"""The same spine with RabbitMQ as the broker (Redis keeps only leases and dedup), and the report
queue's contract against RabbitMQ (test_redis_transport.py runs it against Redis)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.connection import Connection

from tests.integration.harness import Harness, running_harness
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
