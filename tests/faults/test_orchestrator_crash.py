"""The orchestrator is killed (-9) in the middle of a stream of sagas and started again.

On the default settings: reports it had taken but not acknowledged stop being renewed and come
back within seconds (the visibility timeout); outbox rows it had committed but not published are
swept and published again. Every saga still finishes, and every side effect happens once.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from orchestrator.local.supervisor import python_argv
from tests.conftest import BACKENDS
from tests.integration.harness import Harness, running_harness
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually


@pytest.fixture(params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("crash")
    with running_harness(str(request.param), tmp, redis_target, [THREE_STEPS]) as h:
        yield h


def test_sagas_survive_an_orchestrator_crash(harness: Harness) -> None:
    run = uuid.uuid4().hex[:8]
    tags = [f"{run}-{i}" for i in range(80)]
    ids = [harness.submit("it.three", {"tag": t, "behaviour": {"two": {"sleep_ms": 100}}}) for t in tags]

    eventually(lambda: harness.finished(ids) >= 5, timeout=60, what="some sagas to finish")
    orchestrator = next(c for c in harness.stack.supervisor.children if c.name.startswith("orchestrator"))
    os.killpg(orchestrator.process.pid, signal.SIGKILL)
    orchestrator.process.wait()
    assert harness.finished(ids) < len(ids), "the crash came too late to test anything"
    harness.stack.supervisor.spawn(
        "orchestrator-restarted", python_argv("-m", "orchestrator.cli", "orchestrator"), harness.stack.env
    )

    harness.wait_all_final(ids, timeout=180, what="every saga to finish after the restart")
    for saga_id, tag in zip(ids, tags, strict=True):
        assert harness.saga(saga_id).state == "completed"
        assert harness.effects(tag) == ["one", "two", "three"]
