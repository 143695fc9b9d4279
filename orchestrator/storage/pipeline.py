"""Statements sent without waiting for each one's answer (psycopg's pipeline mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
