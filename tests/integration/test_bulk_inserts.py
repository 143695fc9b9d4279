"""Rows inserted in one statement (on PostgreSQL as one JSON document) read back exactly as rows
inserted one by one through SQLAlchemy, on SQLite and PostgreSQL: values, types, JSON null."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from models.base import utcnow
from models.enums import Outcome, Phase
from models.tables import FAN_OUT_MEMBERS, OUTBOX, SAGAS
from orchestrator.service.wiring import Wiring
from orchestrator.storage.bulk import insert_returning_ids, insert_rows
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


NOW = utcnow()


def saga_row(saga_id: str, **values: Any) -> dict[str, Any]:
    now = NOW
    return {
        "id": saga_id,
        "tenant": "acme",
        "template_name": "t",
        "template_version": "1.0.0",
        "state": "running",
        "input": {"text": 'quotes " and \\ and ünïcödé ✓', "n": 2**40, "f": 0.1, "none": None, "list": [1, "a"]},
        "input_hash": "h",
        "idempotence_key": None,
        "results": {},
        "error": None,
        "created_at": now,
        "updated_at": now + timedelta(microseconds=1),
        "finished_at": None,
        "sla_warned_at": None,
        "sla_breached_at": None,
        "sla_breach_count": 0,
        "sla_events": [],
        **values,
    }


def member(saga_id: str, n: int, each: Any) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "step_index": 0,
        "phase": Phase.forward,
        "attempt": 1,
        "member": n,
        "each": each,
        "outcome": Outcome.running,
        "worker": None,
        "error": None,
        "result": None,
        "finished_at": None,
    }


def test_rows_inserted_at_once_read_back_as_rows_inserted_one_by_one(wiring: Wiring) -> None:
    with wiring.sessions.begin() as session:
        insert_rows(session, SAGAS, [saga_row("bulk"), saga_row("bulk-2", idempotence_key="k")])
        session.execute(insert(SAGAS), [saga_row("one")])
        insert_rows(session, FAN_OUT_MEMBERS, [member("bulk", 0, None), member("bulk", 1, {"a": [1]})])
        session.execute(insert(FAN_OUT_MEMBERS), [member("one", 0, None), member("one", 1, {"a": [1]})])
    with wiring.sessions() as session:
        rows = {r.id: r._asdict() for r in session.execute(select(SAGAS))}
        assert {k: v for k, v in rows["bulk"].items() if k != "id"} == {
            k: v for k, v in rows["one"].items() if k != "id"
        }
        assert rows["bulk"]["input"]["text"] == 'quotes " and \\ and ünïcödé ✓'
        assert rows["bulk"]["updated_at"] - rows["bulk"]["created_at"] == timedelta(microseconds=1)
        assert rows["bulk-2"]["idempotence_key"] == "k"
        members = {
            (r.saga_id, r.member): r._asdict()
            for r in session.execute(select(FAN_OUT_MEMBERS, text("each IS NULL AS sql_null")))
        }
        for n in (0, 1):
            bulk, one = members[("bulk", n)], members[("one", n)]
            assert {k: v for k, v in bulk.items() if k != "saga_id"} == {k: v for k, v in one.items() if k != "saga_id"}
        # A None in a JSON column is JSON null, as SQLAlchemy keeps it, not SQL NULL.
        assert not members[("bulk", 0)]["sql_null"]


def test_ids_come_back_in_the_rows_order(wiring: Wiring) -> None:
    rows = [{"queue": f"cap.q{i}", "payload": {"i": i}, "created_at": NOW, "publish_count": 0} for i in range(500)]
    with wiring.sessions.begin() as session:
        ids = insert_returning_ids(session, OUTBOX, rows)
    with wiring.sessions() as session:
        stored = {row.id: row.payload for row in session.execute(select(OUTBOX.c.id, OUTBOX.c.payload))}
    assert [stored[i] for i in ids] == [{"i": i} for i in range(500)]
