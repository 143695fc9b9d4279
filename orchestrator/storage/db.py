"""Engines and units of work, on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import select as io_select
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.tables import SagaRun
from orchestrator.storage.unit_of_work import WorkSession, uow_of

SessionFactory = sessionmaker[WorkSession]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for workyard's access pattern on either backend."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs)
        _tune_sqlite(engine)
        return engine
    options = {"pool_size": 5, "max_overflow": 10, **kwargs}
    if url.startswith("postgresql+psycopg:"):
        engine = create_engine(url, **options)
        _check_idle_connections(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def _check_idle_connections(engine: Engine) -> None:
    """Replace a pooled connection the server closed while it sat idle, before it is used.

    SQLAlchemy's ``pool_pre_ping`` would ask with a ``SELECT 1`` on every checkout: a round trip
    and, measured, about a fifth of what a saga submit costs. A PostgreSQL server that restarts,
    or ends a backend (``pg_terminate_backend``, idle timeouts), tells the client and closes the
    socket, so an idle connection whose socket has something to read is one to throw away. A
    connection that dies without a word (a network partition) fails on its first statement
    instead, and SQLAlchemy then replaces the whole pool; the orchestrator's loops retry.
    """

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if not _idle_and_open(dbapi_conn):
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("the database closed this connection while it was idle")


def _idle_and_open(dbapi_conn: Any) -> bool:
    """Whether a psycopg connection back from the pool is still open and silent."""
    if dbapi_conn.closed or dbapi_conn.broken:
        return False
    try:
        fd = dbapi_conn.pgconn.socket
    except Exception:  # no socket: the connection is gone
        return False
    poller = io_select.poll()
    poller.register(fd, io_select.POLLIN | io_select.POLLERR | io_select.POLLHUP)
    # workyard never LISTENs, so an idle connection has nothing to read unless the server has
    # hung up (it says why, then closes). Anything else there is discarded with it: harmless.
    return not poller.poll(0)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below open transactions, not the driver.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")  # a reader: no write lock, so no writer waits for it
            return
        # Take the write lock up front: a read that later writes cannot then deadlock
        # against another process doing the same (SQLITE_BUSY on lock upgrade).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# The execution option of a connection whose transaction only reads (see ``reading``).
READ_ONLY_OPTION = "workyard_read_only"


@contextmanager
def reading(sessions: SessionFactory) -> Iterator[Session]:
    """A session that only reads. On SQLite its transaction (rolled back at the end) does not
    take the write lock every other transaction takes up front, so a loop looking for work (due
    timers, due webhook deliveries) never makes the coordinator wait. On PostgreSQL it reads in
    autocommit: under READ COMMITTED each statement reads its own snapshot inside a transaction
    too, so nothing changes but the BEGIN and ROLLBACK an idle loop's look cost every second
    (half its wall time, a third of its CPU)."""
    with sessions() as session:
        options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if session.get_bind().dialect.name == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        session.connection(execution_options=options)
        yield session


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, class_=WorkSession, expire_on_commit=False)


def lock_sagas(session: Session, saga_ids: Iterable[str], *, running: bool = False) -> dict[str, SagaRun]:
    """Load and row-lock sagas with their step runs, always in id order so concurrent
    coordinators cannot deadlock. They are held by the transaction's unit of work, which writes
    what changed on them as it commits (:mod:`orchestrator.storage.held`). With ``running``, their
    running attempts are read along (``uow.held.running_attempts``).

    On SQLite the transaction already holds the database's write lock.
    """
    return uow_of(session).held.lock_sagas(session, saga_ids, running=running)


# SQLSTATEs worth trying again: serialization failure, deadlock, and the connection classes.
_TRANSIENT_SQLSTATES = ("40001", "40P01", "08", "57P")


def is_transient(exc: BaseException) -> bool:
    """Whether a failure says nothing about the work: retrying it later may well succeed
    (the database is away or restarting, or this transaction lost a deadlock)."""
    if isinstance(exc, (OperationalError, InterfaceError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return any(sqlstate.startswith(code) for code in _TRANSIENT_SQLSTATES)
    return False
