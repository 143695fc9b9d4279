"""Statements sent in one round trip (``storage.pipeline.select_in_turn``): each one's rows, the
parameters converted by their types, errors as SQLAlchemy's, and on PostgreSQL a statement after
one that waited for a lock reads what was committed while it waited (routing's capacity hold
relies on it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, func, insert, literal_column, select, text
from sqlalchemy.exc import DBAPIError

from models.base import utcnow
from models.tables import OUTBOX
from orchestrator.storage.db import make_engine, make_session_factory
from orchestrator.storage.migrate import upgrade
from orchestrator.storage.pipeline import select_in_turn
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
