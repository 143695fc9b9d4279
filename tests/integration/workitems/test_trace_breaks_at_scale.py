"""Traceability at a service's scale, on SQLite and PostgreSQL: the nightly validations run off the
timer loop, arming them never stops the loop, every break of a kind is recorded over the nights,
a break that cannot be raised never fails the call that found it, and the real-time check costs
one read per audited change where nothing new can be found."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select, text

from models.base import utcnow
from models.work_tables import EVENTS, WorkItem
from orchestrator.service.timers import TimerService
from orchestrator.traceability import breaks, nightly, realtime
from orchestrator.traceability.nightly import TAKEN_FOR
from orchestrator.traceability.validate import validate
from orchestrator.work import audit
from orchestrator.work.trace_alerts import KEY_PREFIX
from tests.integration.workitems.conftest import Headers, TokenFactory, sessions, task
from tests.integration.workitems.test_trace_breaks import break_rows, ops, remediations, timers_of_kind, wiring
from tests.integration.workitems.test_traceability import agent_item, goal
from tests.integration.workitems.test_webhooks import Clock
from tests.support import eventually

__all__ = ["ops"]  # a fixture, imported for these tests


def gate_passed_without_approval(item_ids: list[str], tenant: str = "acme") -> list[dict[str, Any]]:
    return [
        {
            "item_id": i,
            "tenant": tenant,
            "action": "gate_passed",
            "actor": "user:ops",
            "details": {"transition": "review->done", "hitl": True, "approvals": [], "evidence": []},
            "at": utcnow(),
        }
        for i in item_ids
    ]


def service_of(client: TestClient, clock: Any = utcnow) -> TimerService:
    w = wiring(client)
    return TimerService(w.sessions, w.settings, w.dispatcher, clock=clock)


def test_a_tick_hands_the_nightly_validations_to_a_worker_and_returns(
    client: TestClient, ops: Headers, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tenant in ("acme", "b", "c"):
        headers = ops if tenant == "acme" else token("user:x", tenant=tenant, scopes=["work:read", "work:write"])
        assert client.post("/api/v1/work-items", json=task(), headers=headers).status_code == 201
    release = threading.Event()
    ran: list[tuple[str, int]] = []
    real = validate

    def held(session: Any, principal: Any, item_id: Any, **kw: Any) -> Any:
        # Stands for a large tenant's validation: it ends only when the test says so (or, without
        # a worker of its own, after 3 s each, so the tick's wait shows).
        release.wait(3)
        ran.append((principal.tenant, threading.get_ident()))
        return real(session, principal, item_id, **kw)

    monkeypatch.setattr(nightly, "validate", held)
    clock = Clock(datetime.now(UTC))
    service = service_of(client, clock)
    try:
        assert service.arm_nightly() == 3
        # Each run re-arms its own tenant's timer only, not every tenant's (n runs, n² reads).
        rearmed_all: list[int] = []

        def ensure_armed(*a: Any) -> int:
            rearmed_all.append(1)
            return 0

        monkeypatch.setattr(nightly, "ensure_armed", ensure_armed)
        due = timers_of_kind(client)["acme"].due_at
        clock.now = due + timedelta(seconds=1)
        assert service.tick() == 3
        # Returned with no validation done: each timer is held by its run meanwhile.
        assert ran == []
        held_until = {t: v.due_at for t, v in timers_of_kind(client).items()}
        assert held_until == dict.fromkeys(("acme", "b", "c"), clock.now + TAKEN_FOR)
        release.set()
        assert service.validations.idle(30)
        assert sorted(t for t, _ in ran) == ["acme", "b", "c"]
        assert all(thread != threading.get_ident() for _, thread in ran)
        assert {v.due_at for v in timers_of_kind(client).values()} == {due + timedelta(days=1)}
        assert rearmed_all == []
    finally:
        release.set()
        service.validations.stop()


def test_a_running_loop_stops_at_once_while_a_validation_runs(
    client: TestClient, ops: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_item(client, ops)
    release = threading.Event()
    started = threading.Event()

    def held(*a: Any, **kw: Any) -> Any:
        started.set()
        release.wait(30)
        raise RuntimeError("stopped")

    monkeypatch.setattr(nightly, "validate", held)
    clock = Clock(datetime.now(UTC))
    service = service_of(client, clock)
    service.arm_nightly()
    clock.now = timers_of_kind(client)["acme"].due_at + timedelta(seconds=1)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert started.wait(10)
        stop.set()
        service.wake.set()
        loop.join(timeout=10)
        assert not loop.is_alive()  # not waiting for the validation
    finally:
        release.set()


def test_arming_that_fails_never_stops_the_loop_from_ticking(
    client: TestClient, ops: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    arms: list[int] = []

    def failing(*a: Any) -> int:
        arms.append(1)
        raise RuntimeError("the database refused it")

    monkeypatch.setattr(nightly, "ensure_armed", failing)
    w = wiring(client)
    service = TimerService(w.sessions, w.settings.model_copy(update={"timer_poll_s": 0.05}), w.dispatcher)
    ticks: list[int] = []
    stop = threading.Event()

    def tick() -> int:
        ticks.append(1)
        return 0

    loop = threading.Thread(target=service.run, args=(stop, tick), daemon=True)
    loop.start()
    try:
        eventually(lambda: len(ticks) >= 3, timeout=10, what="the loop ticking")
    finally:
        stop.set()
        service.wake.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
    assert len(arms) == 1  # tried again a minute later, not on every pass


def test_many_tenants_are_armed_in_chunks(client: TestClient, backend: str) -> None:
    # Past 13,107 tenants one INSERT of five parameters a row is more than PostgreSQL takes.
    n = 14000 if backend == "postgres" else 2500
    with sessions(client).begin() as session:
        session.execute(
            text(
                "INSERT INTO goals (tenant, code, title, description, status, created_by, created_at) "
                "VALUES (:t, 'G', 'g', '', 'active', 'user:x', :now)"
            ),
            [{"t": f"t{i:05d}", "now": utcnow()} for i in range(n)],
        )
    assert service_of(client).arm_nightly() == n
    assert len(timers_of_kind(client)) == n


def test_breaks_past_the_first_hundred_of_a_kind_are_recorded_the_next_night(client: TestClient, ops: Headers) -> None:
    ids = [agent_item(client, ops) for _ in range(105)]
    with sessions(client).begin() as session:
        session.execute(insert(EVENTS), gate_passed_without_approval(ids))
    now = datetime.now(UTC)
    recorded: list[int] = []
    for night in range(3):
        with sessions(client).begin() as session:
            report, new = nightly.run(session, "acme", now + timedelta(days=night))
        assert report.checks.approval_traceability.missing_approvals_count == 105
        recorded.append(new)
    assert recorded == [100, 5, 0]
    assert sorted(r["subject"] for r in break_rows(client)) == sorted(ids)
    assert len(remediations(client)) == 105


def test_a_client_key_the_remediation_would_take_fails_nothing(client: TestClient, ops: Headers) -> None:
    client.post("/api/v1/goals", json=goal("GOAL-A"), headers=ops)
    # A client's key that is the remediation's key as it was spelled before, and one that is the
    # remediation's own.
    for key in ("trace:goalToWorkItemLinkage:GOAL-X", f"{KEY_PREFIX}goalToWorkItemLinkage:GOAL-Y"):
        made = client.post("/api/v1/work-items", json=task(idempotence_key=key), headers=ops)
        assert made.status_code == 201, made.text
    for code in ("GOAL-X", "GOAL-Y"):
        for _ in range(2):
            r = client.post("/api/v1/work-items", json=task(relatedGoals=[code]), headers=ops)
            assert r.status_code == 201, r.text
    rows = {r["subject"]: r for r in break_rows(client)}
    assert sorted(rows) == ["GOAL-X", "GOAL-Y"]
    assert rows["GOAL-X"]["remediation_id"] is not None
    assert rows["GOAL-Y"]["remediation_id"] is None  # recorded, audited and notified; no item
    with sessions(client)() as session:
        noted = session.scalars(
            select(EVENTS.c.id).where(EVENTS.c.action == "trace_broken", EVENTS.c.item_id == rows["GOAL-Y"]["item_id"])
        ).all()
    assert len(noted) == 1


def test_a_break_that_cannot_be_raised_leaves_the_nights_others(
    client: TestClient, ops: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sorted(agent_item(client, ops) for _ in range(3))
    with sessions(client).begin() as session:
        session.execute(insert(EVENTS), gate_passed_without_approval(ids))
    real = breaks.record

    def failing_for_one(session: Any, finding: Any, *a: Any) -> Any:
        if finding.subject == ids[1]:
            session.execute(text("SELECT * FROM no_such_table"))  # fails in the database
        return real(session, finding, *a)

    monkeypatch.setattr(breaks, "record", failing_for_one)
    with sessions(client).begin() as session:
        _, new = nightly.run(session, "acme", datetime.now(UTC))
    assert new == 2
    assert sorted(r["subject"] for r in break_rows(client)) == [ids[0], ids[2]]


def _statements(client: TestClient, n: int) -> int:
    """Statements n audited status changes of items naming goals take (rolled back)."""
    with sessions(client).begin() as session:
        items = list(session.scalars(select(WorkItem).where(WorkItem.related_goals.is_not(None)).limit(n)))
        assert len(items) == n
        statements: list[str] = []
        engine = session.get_bind()

        def count(*a: Any) -> None:
            statements.append(a[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            for item in items:
                audit.record(session, item, "transition", "user:ops", from_status=item.status, to_status=item.status)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        session.rollback()
    return len(statements)


def test_the_check_reads_once_per_change_where_nothing_new_can_be_found(
    client: TestClient, ops: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 10
    for _ in range(n):
        agent_item(client, ops, related_goals=["LABEL-1"])

    def without_check() -> int:
        with monkeypatch.context() as m:
            m.setattr(realtime, "check", lambda *a, **k: [])
            return _statements(client, n)

    base = without_check()
    # No goal registry: the codes are labels; one read per change, nothing more.
    assert _statements(client, n) == base + n
    # A registry that lacks the code: found once (on the first change), then on file.
    client.post("/api/v1/goals", json=goal("GOAL-A"), headers=ops)
    agent_item(client, ops, related_goals=["LABEL-1"])
    assert [r["subject"] for r in break_rows(client)] == ["LABEL-1"]
    assert _statements(client, n) == base + n
