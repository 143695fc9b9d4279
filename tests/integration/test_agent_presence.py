"""Celery workers announce themselves through Redis (they have no database credentials) and the
orchestrator process folds them into the agent registry: real worker and orchestrator
subprocesses, the registry read through the HTTP API."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import keys
from orchestrator.api.app import create_app
from tests.conftest import BACKENDS
from tests.integration.harness import Harness, running_harness
from tests.support import RedisTarget, eventually

ADMIN = "presence-admin-token"


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("presence")
    # The stack's own workers: alpha and beta, concurrency 2 each.
    with running_harness(str(request.param), tmp, redis_target, [], admin_token=ADMIN) as h:
        yield h


def agents(harness: Harness, **settings: Any) -> dict[str, dict[str, Any]]:
    """GET /api/v1/agents as an operator, through an API on the stack's database."""
    app = create_app(harness.settings.model_copy(update=settings))
    with TestClient(app) as api:
        page = api.get("/api/v1/agents?limit=500", headers={"Authorization": f"Bearer {ADMIN}"})
    assert page.status_code == 200, page.text
    return {a["id"]: a for a in page.json()["agents"]}


def test_a_running_worker_is_a_live_agent_of_every_tenant(harness: Harness) -> None:
    names = set(harness.stack.worker_names)
    listed = eventually(lambda: (found := agents(harness)) and names <= set(found) and found, what="workers listed")
    for name in names:
        agent = listed[name]
        capability = name.split("-")[0]  # alpha-0@host-pid
        assert agent["tenant"] == "*" and agent["liveness"] == "live"
        assert agent["last_heartbeat_source"] == "celery" and agent["registered_by"] == "system:celery"
        assert agent["spec"]["agent_type"] == "stateless_tool_caller"
        assert [c["name"] for c in agent["spec"]["capabilities"]] == [capability]
        assert agent["capacity"] == 2
    assert harness.books.sismember(keys.WORKER_PRESENCE_INDEX, sorted(names)[0])


def test_a_stopped_worker_stops_beating_and_goes_stale(harness: Harness) -> None:
    alpha = next(n for n in harness.stack.worker_names if n.startswith("alpha"))
    beta = next(n for n in harness.stack.worker_names if n.startswith("beta"))
    eventually(lambda: agents(harness).get(alpha), what="alpha listed")
    child = next(
        c for c in harness.stack.supervisor.children if c.name.startswith("worker-alpha") and c.process.poll() is None
    )
    os.killpg(child.process.pid, signal.SIGTERM)  # a warm shutdown: it takes its record away
    child.process.wait(timeout=30)
    assert harness.books.get(keys.worker_presence(alpha)) is None
    # Read with short thresholds (the reading side only): the workers' marks are a few seconds apart.
    short = {"agent_stale_after_s": 12.0, "agent_dead_after_s": 600.0}
    listed = eventually(
        lambda: (found := agents(harness, **short))[alpha]["liveness"] == "stale" and found,
        timeout=45,
        what="the stopped worker to go stale",
    )
    assert listed[beta]["liveness"] == "live"  # the other one still beats
