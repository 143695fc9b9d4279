"""Redis loses its data (kill -9, its files deleted, started again empty on the same port) in the
middle of a stream of sagas, some with slow steps.

On the default settings (the visibility timeout, the step watchdog's hour): the orchestrator finds
its generation marker gone and dispatches again every attempt in flight, so every saga still
finishes, within a bounded time rather than at the watchdog's deadline. Without persistence a step
may run twice (before the loss and after): expected, and not asserted on; the handlers' own books
are lost with the data anyway. The broker is another database of that Redis, so both markers are
exercised.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator.local.embedded import redis_server_binary
from tests.conftest import BACKENDS
from tests.integration.harness import Harness, free_port, running_harness
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually


@dataclass
class VolatileRedis:
    """A TCP redis-server of the test's own, without persistence, that the test can wipe out."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> RedisTarget:
        # The broker in another database than the store: each carries a marker of its own.
        return RedisTarget(broker_url=f"redis://127.0.0.1:{self.port}/1", redis_url=f"redis://127.0.0.1:{self.port}/0")

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # The log outlives the data it is about: it sits beside the data directory.
        with (self.directory.parent / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
                + ["--save", "", "--appendonly", "no", "--daemonize", "no", "--databases", "16"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            eventually(lambda: _answers(client), timeout=15, what=f"redis-server on port {self.port}")
        finally:
            client.close()

    def lose_everything(self) -> None:
        """kill -9, delete its files, start it again empty on the same port."""
        self.kill()
        shutil.rmtree(self.directory)
        self.start()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[VolatileRedis]:
    server = VolatileRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, volatile_redis: VolatileRedis, tmp_path: Path) -> Iterator[Harness]:
    with running_harness(str(request.param), tmp_path / "stack", volatile_redis.target, [THREE_STEPS]) as h:
        yield h


def test_sagas_finish_after_redis_loses_its_data(harness: Harness, volatile_redis: VolatileRedis) -> None:
    run = uuid.uuid4().hex[:8]
    # Every fourth saga has a slow second step: running (or queued) when the data goes.
    data = [{"tag": f"{run}-{i}", "behaviour": {"two": {"sleep_ms": 3000 if i % 4 == 0 else 100}}} for i in range(40)]
    ids = [harness.submit("it.three", d) for d in data]

    eventually(lambda: harness.finished(ids) >= 5, timeout=60, what="some sagas to finish")
    volatile_redis.lose_everything()
    assert harness.finished(ids) < len(ids), "the loss came too late to test anything"

    # Far below the step watchdog's hour: the loss is noticed within a recovery pass (3 s).
    harness.wait_all_final(ids, timeout=120, what="every saga to finish after the loss")
    states = [harness.saga(i).state for i in ids]
    # A step running while Redis was away may fail (its handler's books are in that Redis), and
    # its retries may run out: the saga then compensates, as designed. Nothing is left waiting.
    assert {str(s) for s in states} <= {"completed", "compensated"}, states
