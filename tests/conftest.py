"""Fixtures: one real Redis for the session, and SQLite / PostgreSQL databases."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from orchestrator.local.embedded import start_redis
from tests.migrated import postgres_database, sqlite_database
from tests.support import RedisTarget, need, postgres_schema, redis_target_from_socket, redis_target_from_url

PG_URL = os.environ.get("WORKYARD_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("WORKYARD_TEST_REDIS_URL")


def worker_index() -> int:
    """Which pytest-xdist worker this process is (gw0, gw1, ...); 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def worker_redis_url(url: str, index: int) -> str:
    """``url`` moved down ``index`` databases, so parallel workers never flush or consume each
    other's keys and queues (kombu scopes its fanout channels by database too)."""
    if index == 0:
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db - index) % REDIS_DATABASES}"))


REDIS_DATABASES = 16  # redis-server's default `databases`


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    """WORKYARD_TEST_REDIS_URL if set (it must answer; an xdist worker takes a database of its own
    below it), else a redis-server started for the session (one per xdist worker)."""
    if REDIS_URL:
        target = redis_target_from_url(worker_redis_url(REDIS_URL, worker_index()))
        try:
            target.client().ping()
        except redis.RedisError as exc:
            pytest.fail(f"WORKYARD_TEST_REDIS_URL={REDIS_URL} ({target.redis_url}) does not answer: {exc}")
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


def migrated_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """As ``database_url``, a fresh database, but already at the migrations' head: what
    ``upgrade`` makes, without running alembic for each test (tests/migrated.py)."""
    if backend == "sqlite":
        yield sqlite_database(tmp_path)
        return
    if not PG_URL:
        need("PostgreSQL", "set WORKYARD_TEST_DATABASE_URL")
    assert PG_URL is not None
    yield from postgres_database(PG_URL)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# Seconds each module took in a full ``make test`` (measured with --durations on a shared 2-core
# machine; only the order matters): ``make test`` hands whole modules to its parallel workers
# (``--dist loadscope --no-loadscope-reorder``), and the longest are started first, so the run does
# not end waiting on one long module that started late. A module not listed counts a second a test.
DURATIONS = Path(__file__).with_name("durations.json")


# Last: after pytest has ordered each module's tests to set each fixture up as few times as it can.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first (see DURATIONS); within a module, pytest's order."""
    seconds: dict[str, float] = json.loads(DURATIONS.read_text(encoding="utf-8"))
    tests = Counter(_module(item) for item in items)
    items.sort(key=lambda item: -seconds.get(_module(item), tests[_module(item)]))  # stable: order kept within


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]
