"""Statements sent past SQLAlchemy's execution (``storage.pipeline``): ``select_in_turn``'s rows
in one round trip, the parameters converted by their types, errors as SQLAlchemy's, and on
PostgreSQL a statement after one that waited for a lock reads what was committed while it waited
(routing's capacity hold relies on it); ``write`` and ``write_returning`` store what SQLAlchemy
would (constant defaults filled in), raise SQLAlchemy's errors, and show their statements to
the engine's listeners."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from models.base import utcnow
from models.tables import OUTBOX, SAGAS
from orchestrator.storage.db import is_transient, make_engine, make_session_factory
from orchestrator.storage.migrate import upgrade
from orchestrator.storage.pipeline import json_values, pipelined, select_in_turn, write_returning
from orchestrator.storage.pipeline import write as write_past
from tests.conftest import BACKENDS, database_url
from tests.support import eventually

postgres_only = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(concat_ws(' ', 'pipeline test', current_schema()), 0))")
_NOW = bindparam("now", type_=OUTBOX.c.created_at.type)
# Outbox rows written before ``now`` (a typed parameter: an aware datetime, converted as SQLAlchemy would).
_COUNT = (
    select(func.count()).select_from(OUTBOX).where(OUTBOX.c.queue == bindparam("queue"), OUTBOX.c.created_at < _NOW)
)


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    for url in database_url(backend, tmp_path):
        built = make_engine(url)
        upgrade(built)
        try:
            yield built
        finally:
            built.dispose()


def write(engine: Engine, queue: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(OUTBOX), [{"queue": queue, "payload": {}, "created_at": utcnow()}])


def blocked_on_the_lock(engine: Engine) -> None:
    """Until another session waits for an advisory lock (its statement was sent and is waiting)."""

    def waiting() -> int:
        with engine.connect() as conn:
            found = conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
            return int(found or 0)

    eventually(waiting, timeout=10, what="a session waiting for the advisory lock")


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_statements_rows_in_order(engine: Engine) -> None:
    write(engine, "q.one")
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        later = utcnow() + timedelta(seconds=5)
        found = select_in_turn(
            session,
            [
                (_COUNT, {"queue": "q.one", "now": later}),
                (select(literal_column("2"), literal_column("'two'")), {}),
                (_COUNT, {"queue": "q.none", "now": later}),
            ],
        )
    assert found == [[(1,)], [(2, "two")], [(0,)]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_is_sqlalchemys(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with pytest.raises(DBAPIError), sessions.begin() as session:
        select_in_turn(session, [(select(literal_column("1")), {}), (text("SELECT no_such_column FROM outbox"), {})])


@postgres_only
def test_a_statement_after_a_lock_reads_what_was_committed_while_it_waited(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    waiting = threading.Event()
    with sessions.begin() as holder:
        holder.execute(_LOCK)

        def count_under_the_lock() -> int:
            with sessions.begin() as session:
                session.execute(select(literal_column("1")))  # the transaction has begun before the wait
                waiting.set()
                _, [[count]] = select_in_turn(
                    session, [(_LOCK, {}), (_COUNT, {"queue": "q.late", "now": utcnow() + timedelta(minutes=1)})]
                )
                return int(count)

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(count_under_the_lock)
            assert waiting.wait(10)
            blocked_on_the_lock(engine)
            holder.execute(insert(OUTBOX), [{"queue": "q.late", "payload": {}, "created_at": utcnow()}])
            holder.commit()  # releases the lock: the count runs now, and sees the row
            assert future.result(timeout=30) == 1


_WRITTEN_AT = utcnow()


def _saga_row(saga_id: str, **values: Any) -> dict[str, Any]:
    now = _WRITTEN_AT
    row = {
        "id": saga_id,
        "tenant": "t",
        "template_name": "tpl",
        "template_version": "1.0.0",
        "state": "running",
        "input": {"n": 1, "nested": [1, "two", None]},
        "input_hash": "h",
        "created_at": now,
        "updated_at": now,
        # Columns whose defaults SQLAlchemy computes (a new dict, a new list) are given: a
        # statement leaving them out goes through SQLAlchemy. Constant defaults are left out.
        "results": {},
        "sla_events": [],
    }
    return row | values


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_written_past_sqlalchemy_read_back_as_rows_written_through_it(engine: Engine) -> None:
    """The same rows, one pair written by SQLAlchemy and one by ``write``, read back alike
    (datetimes and JSON converted by the dialect's own processors, the columns' constant
    defaults filled in); then updated, and deleted by a one-parameter IN, alike."""
    sessions = make_session_factory(engine)
    ours, theirs = ["past-1", "past-2"], ["via-1", "via-2"]
    with sessions.begin() as session:
        session.execute(insert(SAGAS), [_saga_row(i) for i in theirs])
        with pipelined(session):
            write_past(session, insert(SAGAS), [_saga_row(i) for i in ours])
    finished = utcnow()
    changes = {"state": "completed", "finished_at": finished, "results": {"a": [1.5, True]}}
    by_key = update(SAGAS).where(SAGAS.c.id == bindparam("key_id"))
    with sessions.begin() as session:
        session.execute(by_key, [{"key_id": i, **changes} for i in theirs])
        write_past(session, by_key, [{"key_id": i, **changes} for i in ours])
        write_past(session, by_key, {"key_id": ours[0], "error": None, **changes})
    columns = [c for c in SAGAS.c if c.key != "id"]
    with sessions() as session:
        rows = {r.id: tuple(r[1:]) for r in session.execute(select(SAGAS.c.id, *columns))}
        # On SQLite, what was stored is text: compare it as stored, not only as read back.
        raw = (
            {
                r[0]: tuple(r[1:])
                for r in session.execute(text("SELECT id, updated_at, finished_at, input FROM saga_runs"))
            }
            if engine.dialect.name == "sqlite"
            else {}
        )
    assert rows["past-1"] == rows["via-1"] != ()
    assert rows["past-2"] == rows["via-2"]
    if raw:
        assert raw["past-1"][1:] == raw["via-1"][1:]
    with sessions.begin() as session:
        among = SAGAS.c.id.in_(json_values("ids", SAGAS.c.id)) if engine.dialect.name == "sqlite" else None
        if among is not None:
            write_past(session, SAGAS.delete().where(among), {"ids": ours})
        else:
            session.execute(SAGAS.delete().where(SAGAS.c.id.in_(ours)))
        [(kept,)] = write_returning(session, insert(SAGAS).returning(SAGAS.c.id), _saga_row("returned"))
        left = set(session.scalars(select(SAGAS.c.id)))
    assert kept == "returned"
    assert left == {*theirs, "returned"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_write_past_sqlalchemy_fails_as_sqlalchemy_would_and_is_seen_by_listeners(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    seen: list[tuple[str, bool]] = []

    def record(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, executemany: bool) -> None:
        seen.append((statement.split()[0], executemany))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with sessions.begin() as session:
            write_past(session, insert(SAGAS), _saga_row("dup"))
        with pytest.raises(IntegrityError), sessions.begin() as session:
            write_past(session, insert(SAGAS), [_saga_row("other"), _saga_row("dup")])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert ("INSERT", False) in seen and ("INSERT", True) in seen
    with sessions() as session:
        assert set(session.scalars(select(SAGAS.c.id))) == {"dup"}  # the failed transaction wrote nothing


def _scratch_table(engine: Engine) -> Table:
    """A table of the test's own: a text key, and columns with a constant default and onupdate."""
    table = Table(
        f"scratch_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("key", String(20), primary_key=True),
        Column("name", String(20)),
        Column("revision", Integer, default=0, onupdate=7),
        Column("touched", Integer, default=1, onupdate=lambda: 2),
    )
    table.create(engine)
    return table


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_update_past_sqlalchemy_takes_the_columns_onupdate_as_sqlalchemy_would(engine: Engine) -> None:
    """A constant ``onupdate`` is filled in (not the column's INSERT default); a computed one
    keeps the statement with SQLAlchemy. Row "a" is updated by SQLAlchemy, row "b" past it."""
    table = _scratch_table(engine)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            session.execute(insert(table), [{"key": "a", "name": "x"}, {"key": "b", "name": "x"}])
        by_key = update(table).where(table.c.key == bindparam("k"))
        with sessions.begin() as session:
            session.execute(by_key, {"k": "a", "name": "y"})
            write_past(session, by_key, {"k": "b", "name": "y"})
        with sessions() as session:
            rows = {r.key: tuple(r[1:]) for r in session.execute(select(table))}
        assert rows["a"] == rows["b"] == ("y", 7, 2)
    finally:
        table.drop(engine)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_select_past_sqlalchemy_that_cannot_be_compiled_once_goes_through_it(engine: Engine) -> None:
    """An expanding IN over a typed column: rendered per execution by SQLAlchemy, not sent past
    it with its whole list handed to the type's processor."""
    write(engine, "q.in")
    sessions = make_session_factory(engine)
    typed = select(OUTBOX.c.queue).where(OUTBOX.c.created_at.in_(bindparam("at", expanding=True)))
    with sessions.begin() as session:
        [rows, [(count,)]] = select_in_turn(
            session, [(typed, {"at": [utcnow()]}), (_COUNT, {"queue": "q.in", "now": utcnow()})]
        )
    assert rows == [] and count == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_json_values_match_a_column_as_an_in_list_would(engine: Engine) -> None:
    """A number among the values matches a text key, as an expanding IN's parameter would (a
    JSON number is not text to SQLite); text matches an integer key."""
    table = _scratch_table(engine)
    sessions = make_session_factory(engine)
    try:
        write(engine, "q.json")
        among_keys = table.c.key.in_(json_values("keys", table.c.key))
        with sessions.begin() as session:
            session.execute(insert(table), [{"key": "1"}, {"key": "2"}, {"key": "x'y"}])
            write_past(session, table.delete().where(among_keys), {"keys": [1, "x'y"]})
        with sessions() as session:
            assert set(session.scalars(select(table.c.key))) == {"2"}
            [ids] = select_in_turn(session, [(select(OUTBOX.c.id).where(OUTBOX.c.queue == "q.json"), {})])
            [(found,)] = ids
            among = select(OUTBOX.c.queue).where(OUTBOX.c.id.in_(json_values("ids", OUTBOX.c.id)))
            assert select_in_turn(session, [(among, {"ids": [str(found)]})]) == [[("q.json",)]]
    finally:
        table.drop(engine)


@postgres_only
def test_a_connection_the_server_closed_is_invalidated_and_its_reason_raised(engine: Engine) -> None:
    """As on SQLAlchemy's own path: the session's connection is thrown away (its rollback does
    not fail in turn), and what is raised is the server's reason, a transient error."""
    sessions = make_session_factory(engine)
    with pytest.raises(OperationalError) as raised, sessions.begin() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        write_past(session, insert(SAGAS), _saga_row("after-terminate"))
    assert raised.value.connection_invalidated
    assert "terminat" in str(raised.value.orig)
    assert is_transient(raised.value)
    with sessions() as session:  # the pool gave a live connection again
        assert session.execute(select(literal_column("1"))).scalar_one() == 1
