"""Statements sent without waiting for each one's answer (psycopg's pipeline mode)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Send the statements run inside without waiting for each one's answer, where the driver
    can (psycopg's pipeline mode on PostgreSQL): a run of INSERTs then costs one round trip, not
    one each. Only statements whose answer nobody reads belong inside: SQLAlchemy reads a
    statement's rows as soon as it has run, before the pipeline has them, so a SELECT, a
    RETURNING, or a single-row INSERT into a table with a generated key (unless ``.inline()``)
    fails there. An error surfaces at the end of the block, as SQLAlchemy's error types.
    Elsewhere (SQLite) the statements run one by one as usual."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    pipeline = getattr(driver, "pipeline", None)
    if connection.dialect.driver != "psycopg" or pipeline is None:
        yield
        return
    try:
        with pipeline():
            yield
    except DBAPIError:
        raise
    except connection.dialect.loaded_dbapi.Error as exc:
        # Raised as the pipeline synced on leaving the block: wrap it as SQLAlchemy would have.
        raise DBAPIError.instance(None, None, exc, connection.dialect.loaded_dbapi.Error) from exc


def select_in_turn(session: Session, statements: Sequence[tuple[Executable, Mapping[str, Any]]]) -> list[list[Any]]:
    """Run the statements (each with its parameters) one after another and return each one's rows
    (tuples, their values converted by the selected columns' types as SQLAlchemy would), in one
    round trip where the driver can (psycopg's pipeline mode on PostgreSQL),
    else one by one.

    The server still runs each only once the one before has finished, and under READ COMMITTED
    each reads as of when it starts: a statement after one that waited for a lock sees what was
    committed while it waited, as it would sent on its own. Errors are SQLAlchemy's types.

    Sent past SQLAlchemy, which cannot read a SELECT's rows in a pipeline: each statement is
    compiled once for the dialect and its parameters converted by their types, as SQLAlchemy
    would; nothing SQLAlchemy tracks (ORM objects, autoflush) is involved, so flush first if a
    statement must see pending changes."""
    connection = session.connection()
    driver: Any = connection.connection.driver_connection
    pipeline = getattr(driver, "pipeline", None)
    if connection.dialect.driver != "psycopg" or pipeline is None:
        return [[tuple(row) for row in session.execute(statement, dict(params))] for statement, params in statements]
    ready = [(_compiled(statement, connection.dialect), params) for statement, params in statements]
    try:
        with pipeline():
            cursors = [driver.execute(sql, bind(params), prepare=True) for (sql, bind, _), params in ready]
        return [convert(cursor.fetchall()) for cursor, ((_, _, convert), _) in zip(cursors, ready, strict=True)]
    except DBAPIError:
        raise
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, connection.dialect.loaded_dbapi.Error) from exc


# What a statement compiles to for a dialect: its SQL, what turns parameters into the driver's,
# and what turns the driver's rows into SQLAlchemy's values.
_Ready = tuple[str, Callable[[Mapping[str, Any]], dict[str, Any]], Callable[[list[Any]], list[Any]]]
_ready: dict[tuple[Executable, str, str], _Ready] = {}


def _compiled(statement: Executable, dialect: Dialect) -> _Ready:
    key = (statement, dialect.name, dialect.driver)
    found = _ready.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        processors = {
            name: processor
            for name, bound in compiled.binds.items()
            if (processor := bound.type.bind_processor(dialect)) is not None
        }

        def bind(params: Mapping[str, Any]) -> dict[str, Any]:
            values: dict[str, Any] = compiled.construct_params(dict(params))
            for name, processor in processors.items():
                if name in values:
                    values[name] = processor(values[name])
            return values

        found = _ready[key] = (compiled.string, bind, _converter(statement, dialect))
    return found


def _converter(statement: Executable, dialect: Dialect) -> Callable[[list[Any]], list[Any]]:
    columns = getattr(statement, "selected_columns", ())
    processors = [column.type._cached_result_processor(dialect, None) for column in columns]
    if not any(processors):
        return lambda rows: rows
    steps = [(n, processor) for n, processor in enumerate(processors) if processor is not None]

    def convert(rows: list[Any]) -> list[Any]:
        converted = []
        for row in rows:
            values = list(row)
            for n, processor in steps:
                values[n] = processor(values[n])
            converted.append(tuple(values))
        return converted

    return convert
