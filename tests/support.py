"""Helpers shared by the test suites: waiting, services, backends."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

T = TypeVar("T")

IN_CI = bool(os.environ.get("CI"))
# The repository: where `python -m tests.…` finds the test modules.
ROOT = Path(__file__).resolve().parents[1]


def eventually(
    check: Callable[[], T | Literal[False] | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | Literal[False] | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)  # the poll interval: the one wait the tests' helpers make
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def consistently(check: Callable[[], object], *, duration: float, interval: float = 0.05, what: str) -> None:
    """Assert ``check`` holds on every poll for ``duration`` seconds, for a span that is itself the
    behaviour under test: a lease outliving its TTL, a saga that must not move on meanwhile.
    Fails at the first poll where it does not hold."""
    deadline = time.monotonic() + duration
    while True:
        held = check()
        assert held, f"{what} stopped holding (got {held!r})"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)  # the poll interval, as in eventually()


def need(service: str, reason: str) -> None:
    """A missing server skips on a laptop and fails in CI."""
    if IN_CI:
        pytest.fail(f"{service} is required in CI: {reason}")
    pytest.skip(f"{service} not available: {reason}")


@dataclass(frozen=True)
class RedisTarget:
    """The Redis a test stack uses for both broker and leases."""

    broker_url: str
    redis_url: str

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=10)


def as_text(reply: object) -> str:
    """One string from a Redis reply: redis-py types replies as bytes or str (``decode_responses``)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    raise TypeError(f"not a Redis string reply: {reply!r}")


def redis_target_from_url(url: str) -> RedisTarget:
    return RedisTarget(broker_url=url, redis_url=url)


def redis_target_from_socket(path: Path, db: int = 0) -> RedisTarget:
    return RedisTarget(broker_url=f"redis+socket://{path}?virtual_host={db}", redis_url=f"unix://{path}?db={db}")


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema in the test database; yields a URL whose search_path points at it."""
    schema = f"wy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        need("PostgreSQL", f"cannot use {base_url}: {exc}")
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def kombu_envelope(raw: bytes | str) -> tuple[dict[str, Any], bytes]:
    """A message as kombu's Redis transport stores or publishes it: (envelope, decoded body)."""
    envelope = json.loads(raw)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        return envelope, base64.b64decode(body)
    return envelope, body.encode() if isinstance(body, str) else body


@contextmanager
def in_memory_tracing() -> Iterator[Any]:
    """This process traces into an in-memory exporter (the SDK's) until the block ends: the
    exporter, whose ``get_finished_spans()`` are the spans ended so far."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()
