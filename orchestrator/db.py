"""Engines and units of work, on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import SagaRun

SessionFactory = sessionmaker[Session]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for workyard's access pattern on either backend."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs)
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, **kwargs)


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
        # Take the write lock up front: a read that later writes cannot then deadlock
        # against another process doing the same (SQLITE_BUSY on lock upgrade).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def lock_sagas(session: Session, saga_ids: Iterable[str]) -> dict[str, SagaRun]:
    """Load and row-lock sagas, always in id order so concurrent coordinators cannot deadlock.

    On SQLite the transaction already holds the database's write lock.
    """
    ids: Sequence[str] = sorted(set(saga_ids))
    if not ids:
        return {}
    rows = session.scalars(select(SagaRun).where(SagaRun.id.in_(ids)).order_by(SagaRun.id).with_for_update())
    return {saga.id: saga for saga in rows}
