"""The API's log lines as JSON: a request id on every answer (the caller's X-Request-ID, or a
new one) and on every line the request makes, and one access-log line per request."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config.logging import JsonFormatter
from tests.conftest import BACKENDS
from tests.integration.harness import TENANT, admin_client
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget

ADMIN = "logs-admin-token"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes meanwhile, as WORKYARD_LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root, access = logging.getLogger(), logging.getLogger("workyard.access")
    before = access.level
    root.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        access.setLevel(before)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_each_request_is_answered_with_its_request_id_and_logged_once_as_json(
    client: TestClient, json_log: io.StringIO
) -> None:
    sent = f"upstream-{uuid.uuid4().hex[:8]}"
    answer = client.post(
        "/api/v1/sagas",
        json={"template": "it.three", "input": {"tag": "logs"}, "tenant": TENANT},
        headers={"X-Request-ID": sent},
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["X-Request-ID"] == sent
    missing = client.get("/api/v1/sagas/no-such-saga")
    assert missing.status_code == 404
    made = missing.headers["X-Request-ID"]
    assert len(made) == 32 and made != sent
    # An id that is not sane is replaced, not echoed.
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"] != (
        "bad id\twith spaces"
    )
    unauthorised = client.get("/api/v1/sagas", headers={"Authorization": "Bearer nope"})
    assert unauthorised.status_code == 401

    access = [line for line in lines(json_log) if line["logger"] == "workyard.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/api/v1/sagas", 202),
        ("GET", "/api/v1/sagas/no-such-saga", 404),
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/sagas", 401),
    ]
    first, second, health, refused = access
    assert first["request_id"] == sent and second["request_id"] == made
    assert first["level"] == "INFO" and first["principal"] == "user:admin" and first["tenant"] == "*"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert health["principal"] is None and refused["principal"] is None
    # Every line the submit made (the access line among them) names its request.
    during = [line for line in lines(json_log) if line.get("request_id") == sent]
    assert during and all(line["request_id"] == sent for line in during)
