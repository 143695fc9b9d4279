"""Fixtures: one real Redis for the session, and SQLite / PostgreSQL databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.local.embedded import start_redis
from tests.support import RedisTarget, need, postgres_schema, redis_target_from_socket, redis_target_from_url

PG_URL = os.environ.get("WORKYARD_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("WORKYARD_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    """WORKYARD_TEST_REDIS_URL if set (it must answer), else a redis-server started for the session."""
    if REDIS_URL:
        target = redis_target_from_url(REDIS_URL)
        try:
            target.client().ping()
        except redis.RedisError as exc:
            pytest.fail(f"WORKYARD_TEST_REDIS_URL={REDIS_URL} does not answer: {exc}")
        yield target
        return
    directory = Path(tmp_path_factory.mktemp("redis"))
    socket_path = directory / "redis.sock"
    process = start_redis(directory, socket_path)
    try:
        yield redis_target_from_socket(socket_path)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def clean_redis(redis_target: RedisTarget) -> RedisTarget:
    redis_target.client().flushdb()
    return redis_target


def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'workyard.db'}"
        return
    if not PG_URL:
        need("PostgreSQL", "set WORKYARD_TEST_DATABASE_URL")
    assert PG_URL is not None
    with postgres_schema(PG_URL) as url:
        yield url


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
