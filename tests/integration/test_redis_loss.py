"""A Redis that lost its data is noticed by its missing generation marker, and what was in flight
is dispatched again: the same attempt, idempotence key, fencing token and deadline, once for one
loss however many orchestrators notice it. SQLite and PostgreSQL; no worker runs: the test reads
the capability queue."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from config import keys
from models.tables import RedisGeneration, StepAttempt
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.redis_loss import ROW, RedisLoss
from orchestrator.service.wiring import Wiring
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget, eventually, kombu_envelope
from workers.broker.reports import redis_server
from workers.celery.app import broker_redis_client

QUEUE = "cap.lossy"


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


def submitted(wiring: Wiring, **step: Any) -> str:
    name = f"lossy.{uuid.uuid4().hex[:8]}"
    steps = [{"name": "one", "capability": "lossy", "handler": "one", **step}, {"name": "two", "capability": "lossy"}]
    steps[1]["handler"] = "two"
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    done = submit_saga(wiring.sessions, wiring.settings, template=name, input={"tag": "t", "items": [1, 2, 3]})
    wiring.dispatcher.publish(done.outbox)
    return done.saga.id


def queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The dispatches waiting on the capability queue, oldest first."""
    bodies = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        _, body = kombu_envelope(raw)
        bodies.append(json.loads(body)[0][0])
    return bodies


def watcher(wiring: Wiring, clients: list[redis.Redis] | None = None) -> RedisLoss:
    """A recovery pass as another orchestrator process would run it."""
    return RedisLoss(wiring.sessions, wiring.settings, wiring.dispatcher, clients or [wiring.store_client])


def lose_data(wiring: Wiring) -> None:
    """The store's and the broker's Redis databases lose everything (FLUSHDB each: the suite's
    Redis is shared with other test workers, each on databases of its own)."""
    wiring.store_client.flushdb()
    broker = broker_redis_client(wiring.settings)
    assert broker is not None
    broker.flushdb()
    broker.close()


def generation(wiring: Wiring) -> str | None:
    with wiring.sessions() as session:
        row = session.get(RedisGeneration, ROW)
        return None if row is None else row.generation


def test_a_lost_redis_gets_running_attempts_dispatched_again_once(wiring: Wiring) -> None:
    client = wiring.store_client
    saga_id = submitted(wiring, mutex_scope="scope:{input.tag}")
    first = eventually(lambda: queued(client), what="the first dispatch")
    assert [(d["step"], d["attempt"]) for d in first] == [("one", 1)]

    # The first pass ever: nothing to tell a loss from, so it only writes the marker.
    assert watcher(wiring).tick() == 0
    assert client.get(keys.GENERATION) is not None
    assert watcher(wiring).tick() == 0  # markers and database agree: nothing to do

    lose_data(wiring)  # the data is gone: queue, markers, kombu's bindings
    assert client.keys("_kombu.binding.*") == []
    a, b = watcher(wiring), watcher(wiring)
    known = generation(wiring)
    assert a.tick() == 1
    # Another orchestrator that read the old generation before the first one committed: its
    # compare-and-set fails, and it sends nothing.
    assert b._renew(known) == 0
    assert b.tick() == 0
    assert client.get(keys.GENERATION) == generation(wiring).encode()  # type: ignore[union-attr]

    # Published into a Redis without kombu's bindings, the dispatch still reached its queue.
    again = eventually(lambda: queued(client), what="the dispatch sent again")
    assert len(again) == 1
    same = {k: v for k, v in again[0].items() if k != "dispatched_at"}
    assert same == {k: v for k, v in first[0].items() if k != "dispatched_at"}  # same attempt, key, token, deadline
    with wiring.sessions() as session:
        attempt = session.scalars(select(StepAttempt).where(StepAttempt.saga_id == saga_id)).one()
        assert attempt.deadline_at is not None
        assert datetime.fromisoformat(again[0]["expires_at"]) == attempt.deadline_at.astimezone(UTC)
        assert again[0]["fencing_token"] == attempt.fencing_token is not None


def test_a_fan_out_sends_its_running_members_again(wiring: Wiring) -> None:
    client = wiring.store_client
    submitted(wiring, for_each="{input.items}")
    eventually(lambda: len(queued(client)) == 3, what="three members dispatched")
    assert watcher(wiring).tick() == 0
    lose_data(wiring)
    assert watcher(wiring).tick() == 3
    members = eventually(lambda: len(q := queued(client)) == 3 and q, what="the members sent again")
    assert sorted((m["member"], m["each"]) for m in members) == [(0, 1), (1, 2), (2, 3)]


def test_a_broker_redis_of_its_own_gets_a_marker_too(wiring: Wiring) -> None:
    store = wiring.store_client
    submitted(wiring)
    eventually(lambda: queued(store), what="the first dispatch")
    # The broker as another database of the same server: losing only it is a loss too.
    url = wiring.settings.effective_broker_url()
    url = re.sub(r"virtual_host=\d+", "virtual_host=1", url) if "virtual_host=" in url else re.sub(r"/\d*$", "/1", url)
    second = broker_redis_client(wiring.settings.model_copy(update={"broker_url": url}))
    assert second is not None and redis_server(second) != redis_server(store)
    try:
        second.delete(keys.GENERATION)
        watch = watcher(wiring, [store, second])
        assert watch.tick() == 0
        assert second.get(keys.GENERATION) == store.get(keys.GENERATION)
        second.flushdb()
        assert watch.tick() == 1
        assert second.get(keys.GENERATION) == store.get(keys.GENERATION) is not None
    finally:
        second.flushdb()
        second.close()
