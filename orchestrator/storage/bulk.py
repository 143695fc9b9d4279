"""Many rows into one table in one statement (and many values in one condition), at the cost of
one parameter on PostgreSQL.

An executemany makes the driver bind every row's every value in Python (psycopg: a third of what
a batch of a thousand new sagas costs), and a multi-row ``VALUES`` makes it parse thousands of
placeholders on each execution (too long a statement to be cached). On PostgreSQL the rows
travel instead as one JSON document that the server unpacks into the table's row type
(``json_populate_recordset``): the values are converted by PostgreSQL, as they would be from
text, and JSON columns keep their text as sent. Elsewhere (SQLite) the rows are one executemany,
as SQLAlchemy sends them.

Only for rows whose values are what the columns take: strings, numbers, booleans, aware
datetimes, None, and JSON documents for JSON columns.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Delete, Executable, Table, TextClause, bindparam, delete, func, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from orchestrator.storage.pipeline import json_values, write, write_returning

# (dialect name, table, columns, returning) -> the statement: built once per shape.
_STATEMENTS: dict[tuple[str, str, tuple[str, ...], bool], TextClause] = {}
_INSERTS: dict[tuple[str, bool | None], Executable] = {}
_DELETES: dict[tuple[str, str, str], Delete] = {}


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of one shape: the same keys) into ``table``; nothing is read back,
    so it may run in a pipeline (:func:`orchestrator.storage.pipeline.pipelined`)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        write(session, _executemany(table, returning=False), rows)
        return
    write(session, _statement(dialect, table, tuple(rows[0]), returning=False), {"rows": _document(rows)})


def insert_returning_ids(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (of one shape) into ``table``, whose primary key ``id`` the database
    generates; the ids, in the rows' order."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        if len(rows) > 1:
            return list(session.scalars(_executemany(table, returning=True), rows))
        # The one row of a batch at a steady pace, or of a submit: past SQLAlchemy's execution.
        [(new_id,)] = write_returning(session, _insert_one(table), rows[0])
        return [new_id]
    statement = _statement(dialect, table, tuple(rows[0]), returning=True)
    # Inserted in the rows' order, so a serial key ascends in it (what SQLAlchemy's own sorted
    # RETURNING relies on there too).
    return sorted(row[0] for row in write_returning(session, statement, {"rows": _document(rows)}))


def _executemany(table: Table, *, returning: bool) -> Executable:
    # Built once per table: a statement built per call costs more to build than to run.
    key = (table.name, returning)
    statement = _INSERTS.get(key)
    if statement is None:
        built = insert(table)
        statement = _INSERTS[key] = (
            built.returning(table.c.id, sort_by_parameter_order=True) if returning else built.inline()
        )
    return statement


def _insert_one(table: Table) -> Executable:
    statement = _INSERTS.get((table.name, None))
    if statement is None:
        statement = _INSERTS[(table.name, None)] = insert(table).returning(table.c.id)
    return statement


def any_of(session: Session, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL as ``column = ANY(:array)``, one parameter however
    many values (psycopg parses an IN list of a thousand placeholders anew on every execution:
    several milliseconds)."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column == func.any(bindparam(None, list(values), type_=ARRAY(column.type)))


def delete_where_in(session: Session, table: Table, column: str, values: Collection[Any]) -> None:
    """``DELETE FROM table WHERE column IN (values)``, the statement built once per table, column
    and dialect (building one costs more than running it), its values one parameter on
    PostgreSQL (as :func:`any_of`). Nothing is read back: it may run in a pipeline."""
    if not values:
        return
    dialect = session.get_bind().dialect.name
    key = (dialect, table.name, column)
    statement = _DELETES.get(key)
    if statement is None:
        target = table.c[column]
        if dialect == "postgresql":
            condition = target == func.any(bindparam("values", type_=ARRAY(target.type)))
        else:
            condition = target.in_(json_values("values", target))
        statement = _DELETES[key] = delete(table).where(condition)
    write(session, statement, {"values": list(values)})


def _statement(dialect: Dialect, table: Table, columns: tuple[str, ...], *, returning: bool) -> TextClause:
    key = (dialect.name, table.name, columns, returning)
    statement = _STATEMENTS.get(key)
    if statement is None:
        quote = dialect.identifier_preparer.quote
        name = dialect.identifier_preparer.format_table(table)
        values = ", ".join(_value(table, column, quote(column)) for column in columns)
        sql = (
            f"INSERT INTO {name} ({', '.join(quote(c) for c in columns)}) SELECT {values} "
            f"FROM json_populate_recordset(NULL::{name}, CAST(:rows AS json))"
        )
        if returning:
            sql += f" WITH ORDINALITY AS r ORDER BY r.ordinality RETURNING {name}.id"
        else:
            sql += " AS r"
        statement = _STATEMENTS[key] = text(sql)
    return statement


def _value(table: Table, column: str, quoted: str) -> str:
    column_type = table.c[column].type
    if isinstance(column_type, JSON) and not column_type.none_as_null:
        # SQLAlchemy keeps a None in a JSON column as JSON null, not SQL NULL: so here.
        return f"COALESCE(r.{quoted}, CAST('null' AS json))"
    return f"r.{quoted}"


def _document(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_encode, allow_nan=False)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: workyard stores aware UTC timestamps only")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value this insert takes")
