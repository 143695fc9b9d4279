"""The one-statement claim on PostgreSQL writes what the ORM claim writes, and holds under concurrency.

The same scenario of claims (claim-next with the server's stall clock, a claim by id of an item
with its own stall ladder, labels and a dependency, a person's claim, a take-over of a lapsed
lease, a start that claims first, an empty queue) runs on SQLite (the ORM path), on PostgreSQL
through the ORM path, and on PostgreSQL through the one statement, at the same fixed clock: every
answer and every row the claims leave behind (items, audit trail, timers, outbox, webhook
deliveries) must be the same.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Engine, Table, func, select, update

from models.base import Base
from models.principal import Principal, PrincipalType
from models.tables import OUTBOX, TIMERS
from models.trace_tables import ACTIONS
from models.work_api import WorkItemCreate
from models.work_tables import EVENTS, WORK_ITEMS, WorkItem
from orchestrator.storage.db import SessionFactory, make_engine, make_session_factory
from orchestrator.storage.migrate import upgrade
from orchestrator.work import audit, claim_statement, claims, items, transitions, views
from orchestrator.work.items import create_item
from tests.conftest import database_url

TTL_S = 300.0
STALL_AFTER_S = 900.0
START = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def agent(ident: str) -> Principal:
    return Principal(
        type=PrincipalType.agent,
        id=ident,
        tenant="acme",
        scopes=frozenset({"work:read", "work:write", "work:claim"}),
    )


def person(ident: str) -> Principal:
    return Principal(
        type=PrincipalType.user, id=ident, tenant="acme", scopes=frozenset({"work:read", "work:write", "work:claim"})
    )


class Clock:
    """The time every module of a claim reads: fixed, moved on by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    for module in (claims, items, audit, views, transitions):
        monkeypatch.setattr(module, "utcnow", fixed)
    return fixed


@contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[Engine]:
    for url in database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def create(sessions: SessionFactory, key: str, **fields: Any) -> str:
    body = WorkItemCreate.model_validate(
        {"type": "task", "title": key, "description": "compare", "idempotence_key": key, **fields}
    )
    return create_item(sessions, person("pm"), body, max_payload_bytes=1 << 20)[0].id


def scenario(engine: Engine, clock: Clock) -> list[Any]:
    """Claims of every kind, each in its own transaction; what each answered."""
    sessions = make_session_factory(engine)
    clock.now = START
    first = create(sessions, "first", offer={"type": "agent"}, priority=90)
    own_ladder = create(
        sessions,
        "own-ladder",
        offer={"type": "agent"},
        labels=["zeta", "alpha"],
        dependencies=[first],
        stall={"after_ms": 5_000, "action": "notify"},
    )
    for_people = create(sessions, "for-people", offer={"type": "human"})
    started = create(sessions, "started", offer={"type": "agent"}, priority=10)
    answers: list[Any] = []

    def claim_next(principal: Principal) -> None:
        with sessions.begin() as session:
            got = claims.claim_next(
                session, principal, ttl_s=None, default_ttl_s=TTL_S, default_stall_after_s=STALL_AFTER_S
            )
        answers.append(got.model_dump(mode="json") if got is not None else None)

    def claim(principal: Principal, item_id: str, ttl_s: float | None = None) -> None:
        with sessions.begin() as session:
            got = claims.claim(
                session, principal, item_id, ttl_s=ttl_s, default_ttl_s=TTL_S, default_stall_after_s=STALL_AFTER_S
            )
        answers.append(got.model_dump(mode="json"))

    clock.now = START + timedelta(seconds=1)
    claim_next(agent("a1"))  # the open queue's best: `first`
    claim(agent("a1"), own_ladder, ttl_s=30)  # its own stall ladder, labels, a dependency
    claim(person("ann"), for_people)  # a person's claim: no lease, no timers
    clock.now = START + timedelta(seconds=2)
    with sessions.begin() as session:
        # Start claims first: the session already holds the item it claims (see claim_statement.run).
        got = claims.start(
            session, agent("a2"), started, None, default_ttl_s=TTL_S, default_stall_after_s=STALL_AFTER_S
        )
        answers.append(got.model_dump(mode="json"))
    clock.now = START + timedelta(seconds=TTL_S + 5)  # a1's lease on `first` lapsed, unswept
    claim_next(agent("b1"))  # takes `first` over: lease_expired, then claimed
    claim_next(agent("b2"))  # takes `started` over, in progress (a2's lease lapsed too)
    claim_next(agent("b3"))  # nothing left that b3 can work on (`own-ladder` waits on `first`)
    return answers


def rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row the claims touched, comparable across databases: generated ids dropped, JSON
    columns as (SQL NULL?, value)."""
    found: dict[str, list[dict[str, Any]]] = {}
    tables: list[tuple[Table, tuple[Any, ...]]] = [
        (WORK_ITEMS, (WORK_ITEMS.c.id,)),
        (EVENTS, (EVENTS.c.id,)),
        (TIMERS, (TIMERS.c.key,)),
        (OUTBOX, (OUTBOX.c.id,)),
        (Base.metadata.tables["webhook_deliveries"], ()),
        # The agents' actions (spec §13): their ids are deterministic, so compared too.
        (ACTIONS, (ACTIONS.c.item_id, ACTIONS.c.agent_id, ACTIONS.c.sequence)),
    ]
    with engine.connect() as conn:
        for table, order in tables:
            json_columns = [c for c in table.c if isinstance(c.type, JSON)]
            query = select(*table.c, *(c.is_(None).label(f"{c.name}__is_null") for c in json_columns))
            found[table.name] = [
                {k: v for k, v in row._mapping.items() if k != "id" or table in (WORK_ITEMS, ACTIONS)}
                for row in conn.execute(query.order_by(*order))
            ]
    return found


@pytest.mark.postgres
def test_the_statement_writes_what_the_orm_claim_writes(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database("postgres", tmp_path / "statement") as engine:
        statement_answers = scenario(engine, clock)
        statement_rows = rows(engine)
    monkeypatch.setattr(claim_statement, "supported", lambda session: False)
    with database("postgres", tmp_path / "orm") as engine:
        orm_answers = scenario(engine, clock)
        orm_rows = rows(engine)
    with database("sqlite", tmp_path) as engine:
        sqlite_answers = scenario(engine, clock)
        sqlite_rows = rows(engine)

    assert statement_answers == orm_answers == sqlite_answers
    for table in statement_rows:
        assert statement_rows[table] == orm_rows[table], table
        assert statement_rows[table] == sqlite_rows[table], table
    # What the scenario meant to cover did happen (else equal rows would prove little).
    actions = [(e["action"], e["actor"]) for e in statement_rows["work_item_events"]]
    assert ("lease_expired", "system") in actions and ("claimed", "agent:b1") in actions
    timers = {t["key"].split(":")[0] for t in statement_rows["timers"]}
    assert timers == {"lease_expiry", "stall_check"}
    assert statement_answers[1]["labels"] == ["alpha", "zeta"] and statement_answers[1]["dependencies"]
    assert statement_answers[-2]["status"] == "in_progress" and statement_answers[-2]["lease_epoch"] == 2
    assert statement_answers[-1] is None


@pytest.mark.postgres
def test_claims_racing_over_free_and_lapsed_items_take_each_exactly_once(tmp_path: Path) -> None:
    """Many claimers drain a queue of free items and of items whose holder's lease lapsed
    (taken over through the statement's fallback): each item is claimed once, by the audit trail
    too, each lapse is recorded once, and each item keeps one lease timer, for its last epoch."""
    claimers, free, lapsed = 20, 150, 50
    with database("postgres", tmp_path) as engine:
        sessions = make_session_factory(engine)
        ids = [create(sessions, f"item-{n}", offer={"type": "agent"}) for n in range(free + lapsed)]
        dead = agent("dead")
        for item_id in ids[:lapsed]:
            with sessions.begin() as session:
                claims.claim(session, dead, item_id, ttl_s=60, default_ttl_s=TTL_S)
        with engine.begin() as conn:
            past = datetime.now(UTC) - timedelta(seconds=1)
            conn.execute(update(WORK_ITEMS).where(WORK_ITEMS.c.id.in_(ids[:lapsed])).values(lease_expires_at=past))
        start = threading.Barrier(claimers)

        def claimer(n: int) -> list[str]:
            me, mine = agent(f"claimer-{n}"), list[str]()
            start.wait()
            while True:
                with sessions.begin() as session:
                    got = claims.claim_next(session, me, ttl_s=None, default_ttl_s=TTL_S, default_stall_after_s=60)
                if got is None:
                    return mine
                assert got.claim is not None and got.claim.id == me.id
                mine.append(got.id)

        with ThreadPoolExecutor(claimers) as pool:
            results = list(pool.map(claimer, range(claimers)))
        claimed = Counter(item_id for got in results for item_id in got)
        assert set(claimed) == set(ids) and set(claimed.values()) == {1}
        with engine.connect() as conn:
            events = conn.execute(select(EVENTS.c.item_id, EVENTS.c.action, EVENTS.c.actor)).all()
            epochs = dict(conn.execute(select(WorkItem.id, WorkItem.lease_epoch)).all())
            timers = conn.execute(select(TIMERS.c.key, TIMERS.c.item_id, TIMERS.c.payload)).all()
            open_claims = conn.scalar(select(func.count()).where(WorkItem.claimed_by_id.like("claimer-%")))
        by_claimers = Counter(
            e.item_id for e in events if e.action == "claimed" and e.actor.startswith("agent:claimer")
        )
        assert by_claimers == claimed
        assert Counter(e.item_id for e in events if e.action == "lease_expired") == Counter(ids[:lapsed])
        assert epochs == {i: 2 if i in ids[:lapsed] else 1 for i in ids}
        lease_timers = {t.item_id: t.payload for t in timers if t.key.startswith("lease_expiry:")}
        assert lease_timers == {i: {"lease_epoch": epochs[i]} for i in ids}
        assert open_claims == len(ids)
