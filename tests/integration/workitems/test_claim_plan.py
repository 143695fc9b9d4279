"""What the claim statement reads on PostgreSQL: not every item claimed before it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from orchestrator.storage.db import SessionFactory, make_session_factory
from orchestrator.storage.driver_sql import DriverStatement
from orchestrator.traceability import actions
from orchestrator.work import claim_statement, claims, stalls
from tests.integration.workitems.test_claim_statement import TTL_S, agent, create, database


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def claimed_after_statistics(engine: Engine, sessions: SessionFactory, held: int, free: int) -> list[str]:
    """``held + free`` agent-offered items, PostgreSQL's statistics taken of them (as after a bulk
    load), then ``held`` of them claimed, one claim a transaction; the items' ids."""
    ids = [create(sessions, f"item-{n}", offer={"type": "agent"}) for n in range(held + free)]
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    for n in range(held):
        with sessions.begin() as session:
            assert claims.claim_next(session, agent(f"a{n}"), ttl_s=None, default_ttl_s=TTL_S) is not None
    return ids


@pytest.mark.postgres
def test_the_lapsed_lease_probe_does_not_read_every_claimed_item(tmp_path: Path) -> None:
    """Statistics taken before anything was claimed (as after a bulk load) once sent the
    lapsed-lease probe through every claimed item of the tenant on every claim, none of them
    lapsed: a claim's cost grew with the number of items claimed."""
    held, free = 60, 10
    with database("postgres", tmp_path) as engine:
        sessions = make_session_factory(engine)
        claimed_after_statistics(engine, sessions, held, free)
        me, now = agent("me"), datetime.now(UTC)
        params = claims._probe_params(me, now) | claim_statement.claim_params(
            "agent", me.id, me.ref, now, None, now + timedelta(seconds=TTL_S)
        )
        params |= claim_statement.stall_params(*stalls.first_rung(stalls.default_ladder(900.0), now))
        statement = claims._statement(claims._shape(me), False, True)
        with sessions.begin() as session:
            claim_statement.plan_generically(session)
            plan = explain(session, statement, params)
            session.rollback()
    removed = [(n["Index Name"], n.get("Rows Removed by Filter", 0)) for n in nodes(plan) if "Index Name" in n]
    assert max(count for _, count in removed) < held, removed


def explain(session: Session, statement: DriverStatement, params: dict[str, Any]) -> dict[str, Any]:
    """The plan PostgreSQL ran ``statement`` on, with what each node read (the statement's writes too)."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    cursor = psycopg.RawCursor(driver)
    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql, statement.values(params))
    row = cursor.fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


@pytest.mark.postgres
def test_a_claim_transaction_reads_timers_and_actions_by_key_not_all_of_them(tmp_path: Path) -> None:
    """Statistics taken while the timers and the agents' actions were few (as after a bulk load of
    items) once had a claim without the stall clock look for its item's stall timer, and a batch
    number its claims' actions, over every timer and every action: a claim's cost grew with the
    claims made since."""
    held, free = 60, 10
    with database("postgres", tmp_path) as engine:
        sessions = make_session_factory(engine)
        ids = claimed_after_statistics(engine, sessions, held, free)
        me, now = agent("me"), datetime.now(UTC)
        statement, params = claims.next_at_once(me, now, None, TTL_S, None)  # no stall clock: its timer deleted
        batch = {"items": [ids[-1]], "agents": [me.id], "tenants": [me.tenant], "ats": [now]}
        with sessions.begin() as session:
            claim_statement.plan_generically(session)
            plans = [explain(session, statement, params), explain(session, actions._CLAIMS, batch)]
            session.rollback()
    read = [
        (n["Relation Name"], n["Node Type"], n["Actual Rows"] + n.get("Rows Removed by Filter", 0))
        for plan in plans
        for n in nodes(plan)
        if n.get("Relation Name") in ("timers", "agent_actions")
    ]
    assert {name for name, _, _ in read} == {"timers", "agent_actions"}
    assert all(kind != "Seq Scan" and rows < held for _, kind, rows in read), read
