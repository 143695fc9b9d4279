"""A whole worker host dies (main process and pool, kill -9): the step's deadline moves the saga on."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from orchestrator.stack import WorkerSpec
from tests.conftest import BACKENDS, database_url
from tests.integration.harness import HANDLERS, Harness, stack_settings
from tests.integration.templates import FAST_RETRY
from tests.support import RedisTarget, eventually

DEADLINED = {
    "name": "it.deadlined",
    "version": "1.0.0",
    "steps": [
        {"name": "one", "capability": "alpha", "handler": "one", "retry": FAST_RETRY},
        {"name": "two", "capability": "beta", "handler": "two", "retry": FAST_RETRY, "timeout_ms": 1500},
    ],
}


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("death")
    for url in database_url(str(request.param), tmp):
        h = Harness(stack_settings(tmp, url, redis_target, watchdog_grace_s=1), redis_target).start()
        h.register(DEADLINED)
        try:
            yield h
        finally:
            h.stop()


def test_a_dead_worker_host_times_the_attempt_out_and_another_worker_finishes(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:12]
    saga_id = harness.submit("it.deadlined", {"tag": tag, "behaviour": {"two": {"hang_first_call": True}}})
    eventually(lambda: harness.books.get(f"test:pid:{tag}"), what="step two to start")
    beta = next(c for c in harness.stack.supervisor.children if c.name.startswith("worker-beta"))
    os.killpg(beta.process.pid, signal.SIGKILL)  # the main process and its pool, no warm shutdown
    beta.process.wait()
    harness.stack.start_worker(WorkerSpec(["beta"], HANDLERS, concurrency=1))

    saga = harness.wait_final(saga_id)
    assert saga.state == "completed"
    two = [(a.attempt, a.outcome) for a in saga.attempts if a.step_name == "two"]
    assert two[0] == (1, "timed_out") and two[-1][1] == "succeeded"
    assert harness.effects(tag) == ["one", "two"]
