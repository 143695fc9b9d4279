"""Exit codes a supervisor acts on (systemd's ``Restart=on-failure``): a process that stops on an
error exits non-zero, an orderly stop (SIGTERM) exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.local.embedded import start_redis
from tests.support import ROOT, eventually


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """A redis-server of the test's own (the test stops it), and the environment pointing at it."""
    sock = tmp_path / "redis" / "redis.sock"
    server = start_redis(tmp_path / "redis", sock)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env.update(
        {
            "WORKYARD_DATA_DIR": str(tmp_path / "data"),
            "WORKYARD_BROKER_URL": f"redis+socket://{sock}?virtual_host=0",
            "WORKYARD_REDIS_URL": f"unix://{sock}?db=0",
        }
    )
    try:
        yield server, env
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)


def _workyard(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return _workyard(
        env, "worker", "--capability", "alpha", "--handlers", "tests.integration.handlers", "--pool", "solo"
    )


def _ready(redis_socket_env: dict[str, str], worker: subprocess.Popen[str]) -> None:
    """Wait until the worker consumes its queue (Celery registered it as a consumer)."""
    import redis

    client = redis.Redis.from_url(redis_socket_env["WORKYARD_REDIS_URL"])

    def consuming() -> bool:
        assert worker.poll() is None, worker.communicate()[0][-3000:]
        return bool(client.exists("_kombu.binding.workyard.step") or client.keys("_kombu.binding.*"))

    eventually(consuming, timeout=60, what="the worker to start consuming")


def test_a_worker_stopped_by_sigterm_exits_0(own_redis: tuple[subprocess.Popen[bytes], dict[str, str]]) -> None:
    _server, env = own_redis
    worker = _worker(env)
    try:
        _ready(env, worker)
        os.killpg(worker.pid, signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert worker.returncode == 0, output[-3000:]


def test_a_worker_that_gives_up_on_its_broker_exits_non_zero(
    own_redis: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    server, env = own_redis
    worker = _worker(env | {"WORKYARD_BROKER_CONNECTION_MAX_RETRIES": "2"})
    try:
        _ready(env, worker)
        server.terminate()  # the broker goes away for good
        server.wait(timeout=10)
        output = worker.communicate(timeout=120)[0]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert worker.returncode != 0, output[-3000:]
    assert "Unrecoverable error" in output


def test_the_api_exits_non_zero_when_it_cannot_listen(
    own_redis: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    _server, env = own_redis
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = _workyard(env | {"WORKYARD_API_PORT": str(taken.getsockname()[1])}, "api")
        output = api.communicate(timeout=120)[0]
    assert api.returncode != 0, output[-3000:]


def test_the_orchestrator_exits_non_zero_when_its_database_is_unusable(
    own_redis: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
) -> None:
    _server, env = own_redis
    missing = tmp_path / "no-such-dir" / "workyard.db"
    orchestrator = _workyard(env | {"WORKYARD_DATABASE_URL": f"sqlite:///{missing}"}, "orchestrator")
    try:
        output = orchestrator.communicate(timeout=60)[0]
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            orchestrator.wait()
    assert orchestrator.returncode != 0, output[-3000:]
