"""Statements run past SQLAlchemy, at psycopg's level, where a hot path's Python is the cost.

SQLAlchemy's execution and row handling cost more Python than a small statement's whole round
trip: about 0.4 ms for a routing decision's read of 150 agents' state, 150 us for psycopg to
rewrite a long statement's ``%(name)s`` placeholders on every call. A statement here is compiled
once, its constants written into the text and its parameters as PostgreSQL's own ``$n``, so the
text never changes and psycopg prepares it once per connection; it is sent through a raw cursor
(no placeholder rewriting) and its rows come back as psycopg makes them (timestamps aware, in
the session's time zone, not converted to UTC as ``UTCDateTime`` would: compare them, don't
print them).

A statement sent here does not autoflush: :func:`fetch` flushes the session first, so it sees
the transaction's own changes as an ORM query would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.orm import Session

from orchestrator.storage.pipeline import driver_errors

# The psycopg dialect: what statements are compiled for, once (``supported`` checks the session's).
DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for psycopg: SQL with PostgreSQL's own placeholders (``$1``...), and
    the names of the parameters they stand for, in order."""

    sql: str
    names: tuple[str, ...]

    def values(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)


def supported(session: Session) -> bool:
    """PostgreSQL through psycopg."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def compile_statement(statement: Executable) -> DriverStatement:
    """``statement`` as PostgreSQL takes it: bound values that are not parameters (constants)
    written into the text, the others as ``$n``. An expanding ``IN`` cannot be written so: use
    ``= ANY(array parameter)`` instead."""
    compiled: Any = statement.compile(dialect=DIALECT)  # type: ignore[attr-defined]
    names: list[str] = []

    def render(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "%"  # an escaped percent sign: the text is no longer a format string
        bind = compiled.binds[match.group(1)]
        if bind.expanding:
            raise ValueError(f"{bind.key}: an expanding parameter has no single placeholder; use = ANY(array)")
        if not bind.required:
            return str(compiled.render_literal_value(bind.effective_value, bind.type))
        if bind.key not in names:
            names.append(bind.key)
        return f"${names.index(bind.key) + 1}"

    return DriverStatement(_PLACEHOLDER.sub(render, compiled.string), tuple(names))


def execute(session: Session, statement: DriverStatement, params: dict[str, Any]) -> CursorResult[*tuple[Any, ...]]:
    """Run ``statement`` in the session's transaction with ``params`` (values as psycopg takes
    them: aware datetimes, lists for arrays, JSON as text). The caller flushes first if the
    statement must see the session's pending changes."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # see supported()
    # A raw cursor passes the SQL through as it is. The factory is the connection's own
    # setting: put back at once.
    factory, driver.cursor_factory = driver.cursor_factory, psycopg.RawCursor
    try:
        return connection.exec_driver_sql(statement.sql, statement.values(params))
    finally:
        driver.cursor_factory = factory


def pipelined(
    session: Session, statements: Sequence[tuple[DriverStatement, dict[str, Any]]], *, first: str | None = None
) -> list[tuple[Any, ...] | None]:
    """Run ``statements`` in the session's transaction, all sent before any answer is awaited
    (psycopg's pipeline mode), and return each one's first row (None for none). ``first``: a
    statement without parameters or rows sent ahead of them (a ``SET LOCAL``).

    The server still runs them one after the other, in order, each seeing what those before it
    wrote: only the waits for the answers in between are saved (a round trip each, and on a busy
    machine the wake-ups of both processes). A failure of one fails the transaction, and the
    statements after it are not run; it is raised as SQLAlchemy's error, a connection the server
    closed invalidated (``storage.pipeline.driver_errors``). Prepared once per connection like
    :func:`execute`'s; the caller flushes first."""
    driver = _driver(session)
    cursors: list[psycopg.RawCursor[tuple[Any, ...]]] = []
    with driver_errors(session.connection()), driver.pipeline():
        if first is not None:
            driver.execute(first)
        for statement, params in statements:
            cursor = psycopg.RawCursor(driver)
            cursor.execute(statement.sql, statement.values(params), prepare=True)
            cursors.append(cursor)
    return [cursor.fetchone() for cursor in cursors]


def _driver(session: Session) -> psycopg.Connection[Any]:
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # see supported()
    return driver


def fetch(session: Session, statement: DriverStatement, params: dict[str, Any]) -> Sequence[Row[*tuple[Any, ...]]]:
    """The rows of ``statement``, after flushing the session's pending changes."""
    session.flush()
    return execute(session, statement, params).all()
