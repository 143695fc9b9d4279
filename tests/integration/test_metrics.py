"""``/metrics`` on the API, scraped as Prometheus would, on SQLite and PostgreSQL: the figures of a
saga run through the real coordinator (the test applies its reports; no worker runs), of work
items, of the broker's capability queues; who may scrape; bounded labels."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from models.base import utcnow
from models.principal import PrincipalType
from models.tables import OUTBOX, TIMERS, DeadLetter
from models.work_tables import DELIVERIES, Webhook
from orchestrator.api.app import create_app
from orchestrator.metrics import instruments
from orchestrator.metrics.instruments import MAX_LABEL_VALUES, OTHER
from orchestrator.service.loops import run_orchestrator, serve_metrics
from orchestrator.service.wiring import Wiring
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS, migrated_database_url
from tests.integration.harness import admin_client, database_wiring, deadlined_saga, free_port, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually

ADMIN = "test-admin-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


def wiring_of(client: TestClient) -> Wiring:
    wiring: Wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return wiring


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def report(saga_id: str, index: int, outcome: str = "succeeded", phase: str = "forward") -> dict[str, Any]:
    return {
        "kind": "step_report",
        "saga_id": saga_id,
        "step_index": index,
        "phase": phase,
        "attempt": 1,
        "outcome": outcome,
        "retryable": False,
        "error": None if outcome == "succeeded" else {"type": "StepFailed", "message": "no"},
        "worker": "test",
    }


def counted() -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in instruments.INSTRUMENTS.collect()
        for s in family.samples
    }


def run_saga(client: TestClient, *steps: tuple[int, str, str]) -> str:
    """Submit an it.three saga over the API and apply ``steps`` (index, outcome, phase) as reports."""
    response = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": uuid.uuid4().hex}})
    assert response.status_code == 202, response.text
    saga_id = str(response.json()["id"])
    for index, outcome, phase in steps:
        assert wiring_of(client).coordinator.handle([report(saga_id, index, outcome, phase)]).applied == 1
    return saga_id


def test_a_scrape_shows_sagas_steps_and_compensations(client: TestClient) -> None:
    # This process's counters and histograms as they stand (other tests' sagas counted too).
    before = counted()
    # One saga completes; one fails at its second step and is compensated (step one undone).
    done = run_saga(client, (0, "succeeded", "forward"), (1, "succeeded", "forward"), (2, "succeeded", "forward"))
    undone = run_saga(client, (0, "succeeded", "forward"), (1, "failed", "forward"), (0, "succeeded", "compensate"))
    running = run_saga(client)
    assert client.get(f"/api/v1/sagas/{done}").json()["state"] == "completed"
    assert client.get(f"/api/v1/sagas/{undone}").json()["state"] == "compensated"

    # The counts are read at the app's first scrape (then kept up to max_age_s): fresh here.
    after = scrape(client)
    assert value(after, "workyard_sagas", state="completed") == 1
    assert value(after, "workyard_sagas", state="compensated") == 1
    assert value(after, "workyard_sagas", state="running") == 1
    assert value(after, "workyard_sagas", state="compensation_failed") == 0
    assert value(after, "workyard_compensation_success_ratio") == 1.0

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Step latency per capability, counted by this process's coordinator (steps one and three on
    # alpha, two on beta).
    assert grew("workyard_step_seconds_count", capability="alpha", phase="forward", outcome="succeeded") == 3
    assert grew("workyard_step_seconds_count", capability="beta", phase="forward", outcome="succeeded") == 1
    assert grew("workyard_step_seconds_count", capability="beta", phase="forward", outcome="failed") == 1
    assert grew("workyard_step_seconds_count", capability="alpha", phase="compensate", outcome="succeeded") == 1
    assert (
        grew("workyard_step_seconds_bucket", capability="alpha", phase="forward", outcome="succeeded", le="+Inf") == 3
    )
    assert grew("workyard_compensations_total", outcome="started") == 1
    assert grew("workyard_compensations_total", outcome="compensated") == 1

    # Nothing consumes the capability queues here: every dispatch published waits on Redis.
    # alpha: done's one and three, undone's one and its compensation, running's one; beta: two of them.
    assert value(after, "workyard_queue_messages", capability="alpha") == 5
    assert value(after, "workyard_queue_messages", capability="beta") == 2
    # Read off the oldest dispatch's dispatched_at (0 would mean unread).
    assert 0 < value(after, "workyard_queue_oldest_message_age_seconds", capability="alpha") < 60
    assert running  # its first step's dispatch is among alpha's


def test_a_scrape_shows_work_items_lags_dead_letters_and_webhook_failures(client: TestClient) -> None:
    for n in range(3):
        body = {"type": "task", "tenant": "acme", "title": f"item {n}", "description": "do it"}
        assert client.post("/api/v1/work-items", json=body).status_code == 201
    wiring = wiring_of(client)
    now = utcnow()
    wiring.dispatcher.flush()  # the published outbox rows go: the lag below is the row written now
    with wiring.sessions.begin() as session:
        session.add(DeadLetter(source="test", reason="unreadable", body="?", received_at=now))
        session.execute(
            insert(OUTBOX), [{"queue": "cap.none", "payload": {}, "created_at": now - timedelta(seconds=90)}]
        )
        session.execute(
            insert(TIMERS),
            [{"key": "metrics-test", "kind": "dispatch", "payload": {}, "due_at": now - timedelta(seconds=40)}],
        )
        session.add(Webhook(id="wh1", tenant="acme", url="https://example.com/", secret_encrypted="-", created_by="t"))
        session.flush()
        session.execute(
            insert(DELIVERIES),
            [
                {"webhook_id": "wh1", "event": "saga.completed", "payload": {}, "state": s}
                for s in ("failed", "pending")
            ],
        )

    samples = scrape(client)
    assert value(samples, "workyard_work_items_created_total", type="task") == 3
    assert value(samples, "workyard_work_items", type="task", status="todo") == 3
    assert value(samples, "workyard_dead_letters") == 1
    assert value(samples, "workyard_webhook_failures") == 1
    assert value(samples, "workyard_webhook_deliveries", state="pending") == 1
    assert 90 <= value(samples, "workyard_outbox_lag_seconds") < 150
    assert 40 <= value(samples, "workyard_timer_lag_seconds") < 100
    assert value(samples, "workyard_sla_breached", kind="work_item") == 0


def test_counts_are_kept_for_max_age_then_read_again(client: TestClient) -> None:
    first = scrape(client)
    run_saga(client)
    # Served from the counts the first scrape read: not read again at every scrape.
    assert value(scrape(client), "workyard_sagas", state="running") == value(first, "workyard_sagas", state="running")
    collector = wiring_of(client).metrics.collector
    counts = collector._read_counts()
    assert counts is not None and counts.sagas["running"].count == value(first, "workyard_sagas", state="running") + 1


def test_a_scrape_needs_an_all_tenant_token_with_metrics_read(client: TestClient) -> None:
    anonymous = client.get("/metrics", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401

    def token(tenant: str, *scopes: str) -> str:
        with wiring_of(client).sessions.begin() as session:
            issued = create_token(
                session, principal_type=PrincipalType.user, principal_id="ops", tenant=tenant, scopes=scopes
            )
        return issued.secret

    for tenant, scopes in (("*", ("sagas:read",)), ("acme", ("metrics:read",)), ("acme", ("admin",))):
        refused = client.get("/metrics", headers={"Authorization": f"Bearer {token(tenant, *scopes)}"})
        assert refused.status_code == 403, (tenant, scopes)
        assert set(refused.json()["error"]) == {"code", "message", "details"}
    scraper = token("*", "metrics:read")
    assert value(scrape(client, Authorization=f"Bearer {scraper}"), "workyard_dead_letters") == 0


def test_labels_stay_bounded() -> None:
    seen = instruments.BoundedValues(limit=3)
    assert [seen(f"cap{n}") for n in range(5)] == ["cap0", "cap1", "cap2", OTHER, OTHER]
    assert seen("cap1") == "cap1"
    assert instruments.capabilities.limit == MAX_LABEL_VALUES


def test_a_public_scrape_needs_no_token(tmp_path: Path, clean_redis: RedisTarget) -> None:
    for url in migrated_database_url("sqlite", tmp_path):
        settings = stack_settings(tmp_path, url, clean_redis, metrics_public=True)
        with TestClient(create_app(settings)) as anonymous:
            assert value(scrape(anonymous), "workyard_sagas", state="running") == 0
            # The API itself still needs one.
            assert anonymous.get("/api/v1/sagas").status_code == 401


def test_each_orchestrator_process_serves_metrics_on_its_own_port(tmp_path: Path, clean_redis: RedisTarget) -> None:
    port = free_port()
    with database_wiring("sqlite", tmp_path, clean_redis, orchestrator_metrics_port=port) as wiring:
        saga_id = deadlined_saga(wiring, timeout_ms=60_000, retry_ms=100)
        stop = threading.Event()
        orchestrator = threading.Thread(target=run_orchestrator, args=(wiring, stop), daemon=True)
        orchestrator.start()
        try:
            response = eventually(
                lambda: _get(f"http://127.0.0.1:{port}/metrics"), what="the orchestrator's /metrics to answer"
            )
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(response.text)
                for s in family.samples
            }
            assert value(samples, "workyard_sagas", state="running") == 1, saga_id
            assert value(samples, "workyard_queue_messages", capability="alpha") == 1
        finally:
            stop.set()
            orchestrator.join(timeout=30)
        assert not orchestrator.is_alive()
        # Stopped with the process: nothing answers there any more.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def _get(url: str) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None


def test_a_taken_metrics_port_stops_the_orchestrator_saying_why(tmp_path: Path, clean_redis: RedisTarget) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with database_wiring("sqlite", tmp_path, clean_redis, orchestrator_metrics_port=port) as wiring:
            with pytest.raises(SystemExit, match=f"cannot serve metrics on 127.0.0.1:{port}.*WORKYARD_ORCHESTRATOR"):
                serve_metrics(wiring)  # what run_orchestrator does before it starts anything
