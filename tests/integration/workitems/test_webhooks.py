"""Outgoing webhooks: per-tenant registration, HMAC-signed POSTs to a real HTTP server, retries
with backoff, and the delivery log, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import cast

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from orchestrator.service.timers import TimerService
from orchestrator.service.webhooks import WebhookSender
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions, task
from tests.webhook_receiver import Receiver, webhook_receiver


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def allow_private_targets(client: TestClient) -> None:
    """The receiver listens on 127.0.0.1: only an operator's setting lets webhooks reach it."""
    allow_private(client)


def allow_private(client: TestClient, allowed: bool = True) -> Settings:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    wiring.settings = wiring.settings.model_copy(update={"webhook_allow_private_targets": allowed})
    return cast(Settings, wiring.settings)


@pytest.fixture
def ops(token: TokenFactory) -> Headers:
    token("user:lead", groups=["leads"])
    return token("user:ops", scopes=["work:read", "work:write", "webhooks"])


def register(client: TestClient, headers: Headers, url: str, events: list[str]) -> dict[str, str]:
    response = client.post("/api/v1/webhooks", json={"url": url, "events": events}, headers=headers)
    assert response.status_code == 201, response.json()
    return dict(response.json())


def test_a_breach_is_posted_signed_retried_and_logged(client: TestClient, ops: Headers, receiver: Receiver) -> None:
    hook = register(client, ops, receiver.url, ["sla.breached", "work_item.escalated"])
    assert hook["secret"].startswith("whsec_") and hook["tenant"] == "acme"
    sla = {"target_ms": 1000, "breach_action": "escalate", "breach_to": "leads"}
    item = client.post("/api/v1/work-items", json=task(sla=sla), headers=ops).json()
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    clock = Clock(datetime.fromisoformat(item["created_at"]) + timedelta(seconds=2))
    assert TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=clock).tick() == 1
    sender = WebhookSender(sessions(client), wiring.settings, clock=clock)
    receiver.statuses = [500]  # the receiver is down for the first request
    try:
        assert sender.deliver_due() == 2
        log = client.get("/api/v1/webhooks/deliveries", headers=ops).json()
        by_event = {d["event"]: d for d in log}
        assert sorted(by_event) == ["sla.breached", "work_item.escalated"]
        failed = [d for d in log if d["state"] == "pending"]
        assert len(failed) == 1 and failed[0]["attempts"] == 1 and failed[0]["last_status"] == 500
        assert failed[0]["last_error"] == "HTTP 500"  # the status, never what the receiver said
        assert sender.deliver_due() == 0  # not yet: it backs off
        clock.now += timedelta(seconds=2)
        assert sender.deliver_due() == 1
    finally:
        sender.close()
    log = client.get("/api/v1/webhooks/deliveries", headers=ops).json()
    assert {d["state"] for d in log} == {"delivered"}
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        expected = hmac.new(
            hook["secret"].encode(),
            request.headers["x-workyard-timestamp"].encode() + b"." + request.body,
            hashlib.sha256,
        ).hexdigest()
        assert request.headers["x-workyard-signature"] == f"sha256={expected}"
    breach = json.loads(next(r.body for r in receiver.requests if r.headers["x-workyard-event"] == "sla.breached"))
    assert breach["tenant"] == "acme" and breach["data"]["item"]["id"] == item["id"]
    assert breach["data"]["action"] == "escalate"


def test_other_tenants_hooks_hear_nothing(
    client: TestClient, ops: Headers, token: TokenFactory, receiver: Receiver
) -> None:
    other = token("user:o", tenant="globex", scopes=["webhooks"])
    register(client, other, receiver.url, ["*"])
    item = client.post("/api/v1/work-items", json=task(sla={"target_ms": 10}), headers=ops).json()
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    clock = Clock(datetime.fromisoformat(item["created_at"]) + timedelta(seconds=1))
    TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=clock).tick()
    assert client.get("/api/v1/webhooks/deliveries", headers=other).json() == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "ftp://x.example/hook", "events": ["*"]}, "body.url"),
        ({"url": "https://x.example/hook", "events": []}, "body.events"),
        ({"url": "https://x.example/hook", "events": ["sla.exploded"]}, "body.events.0"),
    ],
)
def test_bad_registrations_are_refused(client: TestClient, ops: Headers, body: dict[str, object], path: str) -> None:
    response = client.post("/api/v1/webhooks", json=body, headers=ops)
    assert response.status_code == 422 and path in [d["path"] for d in error(response)["details"]]
    assert client.get("/api/v1/webhooks", headers=ops).json() == []


def test_webhooks_need_their_scope(client: TestClient, token: TokenFactory) -> None:
    plain = token("user:p")
    assert (
        client.post("/api/v1/webhooks", json={"url": "https://x.example", "events": ["*"]}, headers=plain).status_code
        == 403
    )
    assert client.get("/api/v1/webhooks/deliveries", headers=plain).status_code == 403
    assert client.get("/api/v1/webhooks").status_code == 401
