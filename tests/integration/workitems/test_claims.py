"""Offers, exclusive claims, leases, heartbeats, expiry and stale holders, under concurrency."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models.base import utcnow
from models.principal import Principal, PrincipalType
from models.work_api import WorkItemCreate
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.errors import Conflict
from orchestrator.service.timers import TimerService
from orchestrator.work import claims
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions, task

CLAIMERS = 50
ITEMS = 500


def agent(ident: str, *capabilities: str) -> Principal:
    return Principal(
        type=PrincipalType.agent,
        id=ident,
        tenant="acme",
        scopes=frozenset({"work:read", "work:write", "work:claim"}),
        capabilities=frozenset(capabilities),
    )


def seed(client: TestClient, count: int, offer: Any = None) -> list[str]:
    creator = agent("seeder")
    body = WorkItemCreate.model_validate(task(offer=offer or {"type": "agent"}))
    factory = sessions(client)
    return [create_item(factory, creator, body, max_payload_bytes=1 << 20)[0].id for _ in range(count)]


def test_50_claimers_on_500_items_claim_each_exactly_once(client: TestClient) -> None:
    ids = set(seed(client, ITEMS))
    factory = sessions(client)
    start = threading.Barrier(CLAIMERS)

    def claimer(n: int) -> list[str]:
        me = agent(f"claimer-{n}")
        mine: list[str] = []
        start.wait()
        while True:
            with factory.begin() as session:
                item = claims.claim_next(session, me, ttl_s=None, default_ttl_s=300)
            if item is None:
                return mine
            mine.append(item.id)

    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = list(pool.map(claimer, range(CLAIMERS)))
    claimed = Counter(item_id for got in results for item_id in got)
    assert set(claimed) == ids
    assert set(claimed.values()) == {1}
    assert sum(1 for got in results if got) > 1  # the claimers really did share the work
    with factory() as session:
        audited = Counter(session.scalars(select(WorkItemEvent.item_id).where(WorkItemEvent.action == "claimed")).all())
    assert audited == claimed


def test_50_claimers_racing_for_one_item_one_wins(client: TestClient) -> None:
    (item_id,) = seed(client, 1)
    factory = sessions(client)
    start = threading.Barrier(CLAIMERS)

    def claimer(n: int) -> str:
        start.wait()
        try:
            with factory.begin() as session:
                claims.claim(session, agent(f"c{n}"), item_id, ttl_s=None, default_ttl_s=300)
            return "won"
        except Conflict:
            return "refused"

    with ThreadPoolExecutor(CLAIMERS) as pool:
        outcomes = Counter(pool.map(claimer, range(CLAIMERS)))
    assert outcomes == {"won": 1, "refused": CLAIMERS - 1}


def claim(client: TestClient, item_id: str, headers: Headers, **body: Any) -> Any:
    return client.post(f"/api/v1/work-items/{item_id}/claim", json=body or None, headers=headers)


def lapse(client: TestClient, item_id: str) -> None:
    """Let the item's lease run out: its expiry moves a second into the past, as time would."""
    with sessions(client).begin() as session:
        item = session.get(WorkItem, item_id)
        assert item is not None and item.lease_expires_at is not None
        item.lease_expires_at = utcnow() - timedelta(seconds=1)


def test_an_expired_lease_is_reclaimed_and_the_old_holder_is_refused(client: TestClient, token: TokenFactory) -> None:
    (item_id,) = seed(client, 1)
    first, second = token("agent:first"), token("agent:second")
    held = claim(client, item_id, first, ttl_s=60).json()
    assert held["claim"]["lease_epoch"] == 1 and held["claim"]["lease_expires_at"] is not None
    # While the lease lives, nobody else gets it.
    busy = claim(client, item_id, second)
    assert busy.status_code == 409 and "claimed by agent:first" in error(busy)["message"]
    lapse(client, item_id)
    taken = claim(client, item_id, second)
    assert taken.status_code == 200 and taken.json()["claim"]["id"] == "second"
    assert taken.json()["lease_epoch"] == 2
    late = client.post(f"/api/v1/work-items/{item_id}/complete", json={"lease_epoch": 1, "result": 1}, headers=first)
    assert late.status_code == 409 and "does not hold" in error(late)["message"]
    beat = client.post(f"/api/v1/work-items/{item_id}/heartbeat", json={"lease_epoch": 1}, headers=first)
    assert beat.status_code == 409
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=first).json()
    actions = [(e["action"], e["actor"]) for e in history]
    assert actions[-3:] == [("claimed", "agent:first"), ("lease_expired", "system"), ("claimed", "agent:second")]
    assert history[-2]["details"]["holder"] == "agent:first"


def test_a_holder_that_reclaims_cannot_use_its_old_epoch(client: TestClient, token: TokenFactory) -> None:
    (item_id,) = seed(client, 1)
    me = token("agent:me")
    assert claim(client, item_id, me, ttl_s=60).json()["lease_epoch"] == 1
    lapse(client, item_id)
    assert claim(client, item_id, me).json()["lease_epoch"] == 2
    stale = client.post(f"/api/v1/work-items/{item_id}/complete", json={"lease_epoch": 1}, headers=me)
    assert stale.status_code == 409 and "stale" in error(stale)["message"]
    expired_beat = client.post(f"/api/v1/work-items/{item_id}/heartbeat", json={"lease_epoch": 2}, headers=me)
    assert expired_beat.status_code == 200


def test_heartbeats_keep_a_lease_alive_and_its_timer_returns_a_dead_one(
    client: TestClient, token: TokenFactory
) -> None:
    kept, dropped, released = seed(client, 3)
    me = token("agent:me")
    epoch = claim(client, kept, me, ttl_s=30).json()["lease_epoch"]
    claim(client, dropped, me, ttl_s=30)
    released_epoch = claim(client, released, me, ttl_s=30).json()["lease_epoch"]
    client.post(f"/api/v1/work-items/{released}/release", json={"lease_epoch": released_epoch}, headers=me)
    beat = client.post(f"/api/v1/work-items/{kept}/heartbeat", json={"lease_epoch": epoch, "ttl_s": 120}, headers=me)
    assert beat.status_code == 200
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    now = utcnow()
    # The timer loop, a minute on: the silent lease lapsed, the released one's timer finds
    # nothing to do, and the beaten lease's timer is not due (the beat moved it).
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: now + timedelta(seconds=60))
    assert loop.tick() == 2
    held = [i["id"] for i in client.get("/api/v1/queues/claimed", headers=me).json()["items"]]
    available = sorted(i["id"] for i in client.get("/api/v1/queues/available", headers=me).json()["items"])
    assert held == [kept] and available == sorted([dropped, released])
    assert [e["action"] for e in client.get(f"/api/v1/work-items/{dropped}/history", headers=me).json()][-1] == (
        "lease_expired"
    )
    assert "lease_expired" not in [
        e["action"] for e in client.get(f"/api/v1/work-items/{released}/history", headers=me).json()
    ]
    # Two minutes on, the kept lease lapses too: its timer had been pushed, not dropped.
    later = TimerService(
        wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: now + timedelta(seconds=130)
    )
    assert later.tick() == 1
    assert client.get("/api/v1/queues/claimed", headers=me).json()["items"] == []


def test_an_agents_lease_calls_need_the_epoch(client: TestClient, token: TokenFactory) -> None:
    (item_id,) = seed(client, 1)
    me = token("agent:me")
    claim(client, item_id, me)
    response = client.post(f"/api/v1/work-items/{item_id}/complete", json={"result": 1}, headers=me)
    assert response.status_code == 422 and error(response)["details"][0]["path"] == "lease_epoch"


def test_offers_decide_who_sees_and_claims(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    made = {
        name: client.post("/api/v1/work-items", json=task(title=name, offer=offer), headers=creator).json()["id"]
        for name, offer in [
            ("any agent", {"type": "agent"}),
            ("summarizers", {"type": "agent", "capability": "summarize"}),
            ("claimers", {"type": "human"}),
            ("reviewers", {"type": "human", "scope": "work:claim", "group": "reviewers"}),
            ("approvers", {"type": "human", "scope": "work:supervise"}),
        ]
    }
    who = {
        "agent": token("agent:a", capabilities=["translate"]),
        "summarizer": token("agent:s", capabilities=["summarize"]),
        "user": token("user:u"),
        "reviewer": token("user:r", groups=["reviewers"]),
        "approver": token("user:boss", scopes=["work:read", "work:claim", "work:supervise"]),
    }
    expected = {
        "agent": {"any agent"},
        "summarizer": {"any agent", "summarizers"},
        "user": {"claimers"},
        "reviewer": {"claimers", "reviewers"},
        "approver": {"claimers", "approvers"},
    }
    titles = {v: k for k, v in made.items()}
    for name, headers in who.items():
        items = client.get("/api/v1/queues/available", headers=headers).json()["items"]
        assert {titles[i["id"]] for i in items} == expected[name], name
    refused = claim(client, made["reviewers"], who["user"])
    assert refused.status_code == 403 and "not offered to user:u" in error(refused)["message"]
    assert claim(client, made["reviewers"], who["reviewer"]).status_code == 200


def test_an_assigned_item_is_only_available_to_its_assignee(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    item_id = client.post(
        "/api/v1/work-items", json=task(assignee={"type": "user", "id": "ann"}), headers=creator
    ).json()["id"]
    assert client.get("/api/v1/queues/available", headers=token("user:bo")).json()["items"] == []
    assert claim(client, item_id, token("user:bo")).status_code == 403
    ann = token("user:ann")
    assert [i["id"] for i in client.get("/api/v1/queues/available", headers=ann).json()["items"]] == [item_id]


def test_queues_sort_by_priority_then_age_and_page(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    ids = []
    for priority in (10, 90, 50, 90):
        body = task(title=f"p{priority}", priority=priority)
        ids.append(client.post("/api/v1/work-items", json=body, headers=creator).json()["id"])
    me = token("user:me")
    first = client.get("/api/v1/queues/available", params={"limit": 3}, headers=me).json()
    rest = client.get(
        "/api/v1/queues/available", params={"limit": 3, "cursor": first["next_cursor"]}, headers=me
    ).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == [ids[1], ids[3], ids[2], ids[0]]
    assert rest["next_cursor"] is None
    claimed = client.post("/api/v1/queues/claim-next", headers=me).json()
    assert claimed["id"] == ids[1]


def test_claim_next_on_an_empty_queue_is_204(client: TestClient, token: TokenFactory) -> None:
    assert client.post("/api/v1/queues/claim-next", headers=token("agent:idle")).status_code == 204


def test_a_group_supervisor_sees_the_group_claimed_or_not(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    offer = {"type": "human", "group": "nurses"}
    a = client.post("/api/v1/work-items", json=task(title="a", offer=offer), headers=creator).json()["id"]
    b = client.post("/api/v1/work-items", json=task(title="b", offer=offer), headers=creator).json()["id"]
    client.post(
        "/api/v1/work-items", json=task(title="c", offer={"type": "human", "group": "doctors"}), headers=creator
    )
    assert claim(client, a, token("user:nurse", groups=["nurses"])).status_code == 200
    head = token("user:head", scopes=["work:read", "work:supervise"], groups=["nurses"])
    view = client.get("/api/v1/queues/groups/nurses", headers=head).json()["items"]
    assert {i["id"] for i in view} == {a, b}
    outsider = token("user:x", scopes=["work:read", "work:supervise"], groups=["doctors"])
    assert client.get("/api/v1/queues/groups/nurses", headers=outsider).status_code == 403


def test_start_claims_then_complete_and_fail_follow_the_lifecycle(client: TestClient, token: TokenFactory) -> None:
    creator, me = token("user:pm"), token("user:me")
    done_id = client.post("/api/v1/work-items", json=task(), headers=creator).json()["id"]
    started = client.post(f"/api/v1/work-items/{done_id}/start", headers=me).json()
    assert started["status"] == "in_progress" and started["claim"]["id"] == "me"
    finished = client.post(f"/api/v1/work-items/{done_id}/complete", json={"result": {"summary": "ok"}}, headers=me)
    assert finished.status_code == 200
    assert finished.json()["status"] == "review" and finished.json()["result"] == {"summary": "ok"}
    assert finished.json()["claim"] is None
    failed_id = client.post("/api/v1/work-items", json=task(), headers=creator).json()["id"]
    client.post(f"/api/v1/work-items/{failed_id}/start", headers=me)
    gave_up = client.post(f"/api/v1/work-items/{failed_id}/fail", json={"reason": "source is gone"}, headers=me)
    assert gave_up.json()["status"] == "cancelled" and gave_up.json()["reason"] == "source is gone"
    history = client.get(f"/api/v1/work-items/{failed_id}/history", headers=me).json()
    assert [e["action"] for e in history] == ["created", "claimed", "started", "failed"]
    again = client.post(f"/api/v1/work-items/{failed_id}/claim", headers=me)
    assert again.status_code == 409 and "nothing left to claim" in error(again)["message"]


def test_a_release_returns_the_item_to_the_queue(client: TestClient, token: TokenFactory) -> None:
    (item_id,) = seed(client, 1)
    me, other = token("agent:me"), token("agent:other")
    epoch = claim(client, item_id, me).json()["lease_epoch"]
    released = client.post(
        f"/api/v1/work-items/{item_id}/release", json={"lease_epoch": epoch, "reason": "out of budget"}, headers=me
    )
    assert released.status_code == 200 and released.json()["claim"] is None
    assert claim(client, item_id, other).status_code == 200
    with sessions(client)() as session:
        reasons = session.scalars(select(WorkItemEvent.reason).where(WorkItemEvent.action == "released")).all()
    assert reasons == ["out of budget"]


def test_starting_an_item_whose_dependencies_are_open_is_refused(client: TestClient, token: TokenFactory) -> None:
    creator, me = token("user:pm"), token("user:me")
    first = client.post("/api/v1/work-items", json=task(), headers=creator).json()["id"]
    second = client.post("/api/v1/work-items", json=task(dependencies=[first]), headers=creator).json()["id"]
    refused = client.post(f"/api/v1/work-items/{second}/start", headers=me)
    assert refused.status_code == 409 and first in error(refused)["message"]
    with sessions(client)() as session:
        # The claim that start made went with the refused transaction.
        assert session.scalar(select(func.count()).where(WorkItemEvent.action == "claimed")) == 0
