"""The broker's Redis restarts under a running stack: workers and the orchestrator reconnect.

The stack runs on a redis-server of this module's own (restarting the session's would pull it from
under every other test), on the same Unix socket before and after. With its data (its append-only
file) the messages in flight survive; without, nothing queued does, but every process carries on
and the next sagas complete.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer

from orchestrator.local.embedded import start_redis
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually, redis_target_from_socket
from workers.celery.config import capability_queue


class RestartableRedis:
    """A redis-server of the test's own, restarted on the same socket."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] = start_redis(directory, self.socket)
        self.target: RedisTarget = redis_target_from_socket(self.socket)

    def restart(self, *, keep_data: bool) -> None:
        # SIGTERM: redis-server writes its append-only file out before it exits.
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if not keep_data:
            shutil.rmtree(self.directory / "appendonlydir", ignore_errors=True)
            (self.directory / "redis.rdb").unlink(missing_ok=True)
        self.process = start_redis(self.directory, self.socket)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Harness, RestartableRedis]]:
    server = RestartableRedis(tmp_path / "redis")
    try:
        for url in database_url("sqlite", tmp_path):
            harness = Harness(stack_settings(tmp_path, url, server.target), server.target)
            try:
                harness.start()
                harness.register(THREE_STEPS)
                yield harness, server
            finally:
                harness.stop()
    finally:
        server.stop()


def _submit(harness: Harness) -> str:
    return harness.submit("it.three", {"tag": uuid.uuid4().hex[:12]})


def _exited(harness: Harness) -> list[str]:
    return [c.name for c in harness.stack.supervisor.children if c.process.poll() is not None]


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-data", "without-data"])
def test_workers_and_the_orchestrator_survive_a_redis_restart(
    stack: tuple[Harness, RestartableRedis], keep_data: bool
) -> None:
    harness, server = stack
    assert harness.wait_final(_submit(harness)).state == "completed"

    # A step is running (its message held by the worker, unacknowledged) when Redis goes away.
    tag = uuid.uuid4().hex[:12]
    held = harness.submit("it.three", {"tag": tag, "behaviour": {"two": {"sleep_ms": 1500}}})
    eventually(lambda: harness.calls(tag).get("two"), what="step two to start")
    server.restart(keep_data=keep_data)

    # Every process reconnects and carries on: the next sagas complete.
    for _ in range(3):
        assert harness.wait_final(_submit(harness), timeout=90).state == "completed"
    assert _exited(harness) == [], f"{_exited(harness)} exited on the restart"
    if keep_data:
        # The held message was safe in Redis: its saga finishes too, and the step that was
        # running went on to its end rather than being cancelled and run again.
        assert harness.wait_final(held, timeout=90).state == "completed"
        assert harness.calls(tag)["two"] == 1


def test_a_consumer_closed_while_redis_is_down_loses_nothing(tmp_path: Path) -> None:
    """What Celery's consumer does after a connection error: collect the connection (Redis is
    gone, and the transport lets go of it), then close it, and kombu tries to give the
    unacknowledged messages back. Nothing raises, and the messages stay in Redis for the next
    consumer."""
    server = RestartableRedis(tmp_path / "redis")
    queue = capability_queue("restart-held")
    try:
        conn = Connection(server.target.broker_url)
        received: list[Message] = []
        consumer = Consumer(conn, [queue], callbacks=[lambda _body, message: received.append(message)])
        consumer.consume()
        with conn.Producer() as producer:
            for n in range(3):
                producer.publish({"n": n}, exchange="", routing_key=queue.name, serializer="json", declare=[queue])
        while len(received) < 3:
            conn.drain_events(timeout=5)
        # A worker's event loop always has a BRPOP in flight: closing the channel reads its answer.
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.2)
        server.process.terminate()
        server.process.wait(timeout=10)
        conn.collect()
        conn.close()
        server.restart(keep_data=True)
        with Connection(server.target.broker_url, transport_options={"visibility_timeout": 0}) as again:
            channel = again.default_channel
            channel.qos.restore_visible(num=100)
            got = []
            while (message := queue(channel).get(no_ack=False)) is not None:
                got.append(message.payload["n"])
                message.ack()
        assert sorted(got) == [0, 1, 2]
    finally:
        server.stop()
