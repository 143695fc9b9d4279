"""The worker's store (Redis) goes away for a moment while a step runs: the step's outcome is
stored and reported once Redis is back, not lost with an exception (which would have the task
acknowledged and its dispatch gone). A Redis of the test's own, killed and restarted (AOF,
appendfsync always)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from config import keys
from models.enums import Outcome
from models.messages import StepReport
from tests.faults.servers import RedisServer
from workers import StepContext, step
from workers.runtime import RuntimeConfig, StepRuntime
from workers.store import StepStore

SERVER: list[RedisServer] = []


class Cmd(BaseModel):
    tag: str


@step("outage_work", capability="outage")
def outage_work(ctx: StepContext, cmd: Cmd) -> dict[str, Any]:
    server = SERVER[0]
    server.kill()  # Redis dies while the handler runs; it is back a second later

    def back() -> None:
        time.sleep(1.0)
        server.start()

    threading.Thread(target=back, daemon=True).start()
    return {"tag": cmd.tag}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis")
    running.start()
    SERVER[:] = [running]
    try:
        yield running
    finally:
        running.stop()


def test_a_step_finished_while_redis_was_down_is_stored_and_reported_once_it_is_back(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url(0), socket_timeout=2, socket_connect_timeout=1)
    runtime = StepRuntime(
        StepStore(client, claim_ttl_ms=5000, dedup_ttl_s=3600),
        RuntimeConfig(lease_ttl_ms=10_000, lease_wait_ms=1000, worker="outage-worker"),
    )
    saga_id = uuid.uuid4().hex
    body = {
        "saga_id": saga_id,
        "template": "t",
        "version": "1.0.0",
        "step_index": 0,
        "step": "work",
        "handler": "outage_work",
        "capability": "outage",
        "phase": "forward",
        "attempt": 1,
        "idempotence_key": f"{saga_id}:work",
        "input": {"tag": "outage"},
        "dispatched_at": datetime.now(UTC).isoformat(),
    }
    [report] = runtime.execute(body)
    assert isinstance(report, StepReport)
    assert report.outcome == Outcome.succeeded and report.result == {"tag": "outage"}
    assert client.get(keys.step_result(f"{saga_id}:work")) is not None
