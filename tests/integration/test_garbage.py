"""Garbage on every queue a workyard process consumes: raw bytes that are no kombu message, task
messages Celery refuses. Each is dead-lettered with its reason and the queue it came from, is not
delivered again, and the process that met it carries on (sagas submitted afterwards complete)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from config.keys import ORCHESTRATOR_QUEUE, STEP_TASK, capability_queue
from models.tables import DeadLetter
from tests.conftest import BACKENDS
from tests.integration.harness import Harness, dead_lettered, letters, running_harness, still_working
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually
from workers.celery.config import capability_queue as cap_queue

ALPHA = capability_queue("alpha")

# What a fault injector may LPUSH onto a Redis queue: each carries the marker to find it by.
RAW_GARBAGE: dict[str, Callable[[str], bytes]] = {
    "not-utf8": lambda marker: b"\x00\xff" + marker.encode(),
    "not-json": lambda marker: f"garbage {marker}".encode(),
    "json-list": lambda marker: f'[1, 2, "{marker}"]'.encode(),
    "json-no-envelope": lambda marker: f'{{"body": "{marker}"}}'.encode(),
    # An envelope whose body is not the base64 it says it is (33 characters: bad padding).
    "bad-body-encoding": lambda marker: (
        f'{{"body": "{marker}a", "headers": {{}}, "content-type": "application/json",'
        f' "properties": {{"delivery_tag": "{marker}", "body_encoding": "base64",'
        f' "delivery_info": {{"exchange": "", "routing_key": "x"}}}}}}'
    ).encode(),
}


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    backend = str(request.param)
    with running_harness(backend, tmp_path_factory.mktemp(f"garbage-{backend}"), redis_target, [THREE_STEPS]) as h:
        yield h


@pytest.mark.parametrize("kind", list(RAW_GARBAGE))
@pytest.mark.parametrize("queue", [ALPHA, ORCHESTRATOR_QUEUE])
def test_raw_bytes_on_a_redis_queue_are_dead_lettered_and_the_consumer_carries_on(
    harness: Harness, queue: str, kind: str
) -> None:
    marker = uuid.uuid4().hex
    harness.books.lpush(queue, RAW_GARBAGE[kind](marker))

    source, reason = dead_lettered(harness, marker)
    assert source == queue
    assert reason.startswith("undecodable message"), reason
    assert harness.books.llen(queue) == 0
    still_working(harness, marker)


def test_garbage_among_good_messages_loses_none_of_them(harness: Harness) -> None:
    """Garbage queued between dispatches: every saga completes, every garbage message is a dead letter."""
    markers = [uuid.uuid4().hex for _ in RAW_GARBAGE]
    sagas = []
    for make, marker in zip(RAW_GARBAGE.values(), markers, strict=True):
        sagas.append(harness.submit("it.three", {"tag": uuid.uuid4().hex[:12]}))
        harness.books.lpush(ALPHA, make(marker))
        harness.books.lpush(ORCHESTRATOR_QUEUE, make(marker))
    for saga_id in sagas:
        assert harness.wait_final(saga_id, timeout=60).state == "completed"
    for marker in markers:

        def both(m: str = marker) -> bool:
            return len(letters(harness, m)) == 2

        eventually(both, what=f"two dead letters holding {marker}")


def test_a_task_nobody_registered_is_dead_lettered(harness: Harness) -> None:
    marker = uuid.uuid4().hex
    queue = cap_queue("alpha")
    harness.wiring.app.send_task(
        "workyard.no_such_task", args=[marker], queue=queue, routing_key=ALPHA, declare=[queue]
    )

    source, reason = dead_lettered(harness, marker)
    assert source == ALPHA
    assert "workyard.no_such_task" in reason, reason
    still_working(harness, marker)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b"{not json ", "undecodable task body"),
        ("application/x-garbage", b"whatever", "refused task"),
    ],
    ids=["not-json", "unknown-content-type"],
)
def test_a_task_whose_body_does_not_decode_is_dead_lettered(
    harness: Harness, content_type: str, body: bytes, expected: str
) -> None:
    marker = uuid.uuid4().hex
    queue = cap_queue("alpha")
    with harness.wiring.app.producer_or_acquire() as producer:
        producer.publish(
            body + marker.encode(),
            exchange="",
            routing_key=ALPHA,
            declare=[queue],
            content_type=content_type,
            content_encoding="utf-8",
            headers={"task": STEP_TASK, "id": marker, "lang": "py"},
        )

    source, reason = dead_lettered(harness, marker)
    assert source == ALPHA
    assert reason.startswith(expected), reason
    still_working(harness, marker)


def test_a_message_that_is_no_task_is_dead_lettered(harness: Harness) -> None:
    """A well-formed kombu message without Celery's task header, whose body names no task."""
    marker = uuid.uuid4().hex
    queue = cap_queue("alpha")
    with harness.wiring.app.producer_or_acquire() as producer:
        producer.publish({"hello": marker}, exchange="", routing_key=ALPHA, declare=[queue], serializer="json")

    source, reason = dead_lettered(harness, marker)
    assert source == ALPHA
    assert reason.startswith("not a task message"), reason
    still_working(harness, marker)


def test_a_garbage_body_is_kept_bounded(harness: Harness) -> None:
    marker = uuid.uuid4().hex
    harness.books.lpush(ALPHA, marker.encode() + b"x" * 200_000)

    eventually(lambda: letters(harness, marker), what="a dead letter")
    with harness.wiring.sessions() as session:
        body = session.scalars(select(DeadLetter.body).where(DeadLetter.body.contains(marker))).one()
    assert 0 < len(body) <= 65536
