"""Dead, stalled, slow: an agent that beats its lease without progress is stalled (audited, a
webhook, its ladder's actions), one that stops beating is dead (its lease lapses), and progress
starts the stall clock over."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from models.base import utcnow
from models.tables import Timer
from orchestrator.service.timers import TimerService
from orchestrator.work.stalls import timer_key
from tests.integration.workitems.conftest import Headers, TokenFactory, sessions, task
from tests.integration.workitems.test_webhooks import allow_private, register

SUMMARIZE = {"type": "agent", "capability": "summarize"}
# The server default (WORKYARD_WORK_STALL_AFTER_S): 15 minutes without progress.
DEFAULT_STALL_S = 900


def tick(client: TestClient, at: datetime) -> int:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: at).tick()


def claimed(client: TestClient, creator: Headers, agent: Headers, ttl_s: float, **extra: Any) -> dict[str, Any]:
    made = client.post("/api/v1/work-items", json=task(offer=SUMMARIZE, **extra), headers=creator)
    assert made.status_code == 201, made.text
    item = client.post("/api/v1/queues/claim-next", json={"ttl_s": ttl_s}, headers=agent).json()
    assert item["id"] == made.json()["id"]
    return dict(item)


def beat(client: TestClient, item: dict[str, Any], agent: Headers, **body: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/work-items/{item['id']}/heartbeat", json={"lease_epoch": item["lease_epoch"], **body}, headers=agent
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def actions(client: TestClient, item_id: str, headers: Headers) -> list[str]:
    return [e["action"] for e in client.get(f"/api/v1/work-items/{item_id}/history", headers=headers).json()]


def test_an_agent_beating_without_progress_is_stalled_after_the_default(
    client: TestClient, token: TokenFactory
) -> None:
    creator, agent = token("user:pm"), token("agent:a1", capabilities=["summarize"])
    allow_private(client)
    ops = token("user:ops", scopes=["work:read", "webhooks"])
    register(client, ops, "http://127.0.0.1:9/hook", ["work_item.stalled"])
    item = claimed(client, creator, agent, ttl_s=3600)
    now = utcnow()
    # Beating, with the same progress: alive, but not getting anywhere.
    beat(client, item, agent, progress={"done": 1})
    assert tick(client, now + timedelta(seconds=DEFAULT_STALL_S - 60)) == 0
    assert tick(client, now + timedelta(seconds=DEFAULT_STALL_S + 1)) == 1
    read = client.get(f"/api/v1/work-items/{item['id']}", headers=creator).json()
    assert read["stalled_at"] is not None and read["claim"]["state"] == "stalled" and read["claim"]["id"] == "a1"
    assert actions(client, item["id"], creator)[-3:] == ["stalled", "stall_step", "notified"]
    deliveries = client.get("/api/v1/webhooks/deliveries", headers=ops).json()
    assert [d["event"] for d in deliveries] == ["work_item.stalled"]
    # Progress again: working, audited, and its clock starts over.
    again = beat(client, item, agent, progress={"done": 2})
    assert again["claim"]["state"] == "working" and again["stalled_at"] is None
    assert actions(client, item["id"], creator)[-1] == "progressing"


def test_progress_starts_the_stall_clock_over(client: TestClient, token: TokenFactory) -> None:
    creator, agent = token("user:pm"), token("agent:a1", capabilities=["summarize"])
    item = claimed(client, creator, agent, ttl_s=3600)
    now = utcnow()
    beat(client, item, agent, progress={"done": 1})
    # Ten minutes in it reports more: the stall check at fifteen finds progress five minutes old.
    later = now + timedelta(seconds=600)
    backdate_progress(client, item["id"], later)
    assert tick(client, now + timedelta(seconds=DEFAULT_STALL_S + 1)) == 1
    assert "stalled" not in actions(client, item["id"], creator)
    with sessions(client)() as session:
        due = session.scalar(select(Timer.due_at).where(Timer.key == timer_key(item["id"])))
    assert due == later + timedelta(seconds=DEFAULT_STALL_S)
    assert tick(client, later + timedelta(seconds=DEFAULT_STALL_S + 1)) == 1
    assert "stalled" in actions(client, item["id"], creator)


def test_a_dead_agent_lapses_and_is_not_called_stalled(client: TestClient, token: TokenFactory) -> None:
    creator, agent = token("user:pm"), token("agent:a1", capabilities=["summarize"])
    item = claimed(client, creator, agent, ttl_s=60)
    now = utcnow()
    # No beat at all: at a minute the lease lapses (dead); the stall check then finds no claim.
    assert tick(client, now + timedelta(seconds=DEFAULT_STALL_S + 1)) == 2
    history = actions(client, item["id"], creator)
    assert "lease_expired" in history and "stalled" not in history


def test_an_items_own_stall_ladder_escalates_to_people(client: TestClient, token: TokenFactory) -> None:
    creator, agent = token("user:pm"), token("agent:a1", capabilities=["summarize"])
    ladder = {"after_ms": 60_000, "escalation": [{"after_ms": 120_000, "action": "escalate", "to": "leads"}]}
    item = claimed(client, creator, agent, ttl_s=3600, stall=ladder)
    now = utcnow()
    assert tick(client, now + timedelta(seconds=61)) == 1
    assert client.get(f"/api/v1/work-items/{item['id']}", headers=creator).json()["claim"]["state"] == "stalled"
    assert tick(client, now + timedelta(seconds=121)) == 1
    read = client.get(f"/api/v1/work-items/{item['id']}", headers=creator).json()
    assert read["claim"] is None and read["offer"] == {"type": "human", "scope": "work:claim", "group": "leads"}
    assert actions(client, item["id"], creator)[-5:] == ["stalled", "stall_step", "notified", "stall_step", "escalated"]
    # The agent that stalled has lost the item: its next beat is refused.
    refused = client.post(
        f"/api/v1/work-items/{item['id']}/heartbeat", json={"lease_epoch": item["lease_epoch"]}, headers=agent
    )
    assert refused.status_code == 409


def test_a_bad_stall_ladder_is_a_422_naming_the_field(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    bad = client.post(
        "/api/v1/work-items",
        json=task(offer=SUMMARIZE, stall={"after_ms": 60_000, "escalation": [{"after_ms": 1000, "action": "notify"}]}),
        headers=creator,
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["path"].startswith("body.stall")


def backdate_progress(client: TestClient, item_id: str, at: datetime) -> None:
    """As if the holder's last new progress came at ``at``."""
    from models.work_tables import WorkItem

    with sessions(client).begin() as session:
        row = session.get(WorkItem, item_id)
        assert row is not None
        row.progress_at = at


def test_a_holder_that_stalls_again_after_progress_is_caught_again(client: TestClient, token: TokenFactory) -> None:
    creator, agent = token("user:pm"), token("agent:a1", capabilities=["summarize"])
    item = claimed(client, creator, agent, ttl_s=24 * 3600)
    now = utcnow()
    assert tick(client, now + timedelta(seconds=DEFAULT_STALL_S + 1)) == 1
    assert actions(client, item["id"], creator).count("stalled") == 1
    # It moves on, then stalls once more: the default ladder (one rung) was spent the first time.
    later = now + timedelta(seconds=DEFAULT_STALL_S + 60)
    beat(client, item, agent, progress={"done": 2})
    backdate_progress(client, item["id"], later)
    tick(client, later + timedelta(seconds=DEFAULT_STALL_S - 60))
    assert actions(client, item["id"], creator).count("stalled") == 1  # not yet: progress came
    assert tick(client, later + timedelta(seconds=2 * DEFAULT_STALL_S + 1)) == 1
    assert actions(client, item["id"], creator).count("stalled") == 2
