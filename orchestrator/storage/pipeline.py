"""Statements sent without waiting for each one's answer (psycopg's pipeline mode)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, ColumnElement, Connection, Dialect, Executable, Select, bindparam, cast, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ValuesBase


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
    # Raised as the pipeline synced on leaving the block: handled as SQLAlchemy would have.
    with driver_errors(connection), pipeline():
        yield


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
    compiled = [_compiled(statement, connection.dialect) for statement, _ in statements]
    if any(sql is None for sql, _, _ in compiled) or connection.dialect.driver not in ("psycopg", "pysqlite"):
        return [[tuple(row) for row in session.execute(statement, dict(params))] for statement, params in statements]
    sent = [
        (sql, bind(params), convert)
        for (sql, bind, convert), (_, params) in zip(compiled, statements, strict=True)
        if sql is not None
    ]
    with driver_errors(connection):
        if pipeline is None or len(sent) == 1:
            # SQLite runs in this process: no round trips to save, only SQLAlchemy's execution
            # (and one statement alone is one round trip without a pipeline's sync).
            return [convert(_run(connection, sql, params).fetchall()) for sql, params, convert in sent]
        with pipeline():
            cursors = [_run(connection, sql, params) for sql, params, _ in sent]
        return [convert(cursor.fetchall()) for cursor, (_, _, convert) in zip(cursors, sent, strict=True)]


def json_values(name: str, column: ColumnElement[Any]) -> Select[Any]:
    """``SELECT CAST(value AS <column's type>) FROM json_each(:name)``: the values of one
    parameter, a list sent as a JSON array, for ``column IN (...)`` on SQLite (an expanding IN is
    rendered anew per execution). Cast to the column's type: ``json_each`` keeps a JSON number a
    number, which a text column's value never equals, where an expanding IN's parameter would."""
    value = func.json_each(bindparam(name, type_=JSON)).table_valued("value").c.value
    return select(cast(value, column.type))


def write(session: Session, statement: Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    """Run a statement whose answer nobody reads (an INSERT, UPDATE or DELETE; an executemany
    for a sequence of parameter sets) past SQLAlchemy's execution, which costs more Python than
    running a small statement: compiled once per dialect (for an INSERT or UPDATE with no
    VALUES of its own, for the columns the parameters name, as SQLAlchemy's executemany does)
    and its parameters converted by their types as SQLAlchemy would. Inside :func:`pipelined`
    it joins the pipeline. A statement that cannot be compiled once (an expanding IN) goes
    through SQLAlchemy. Errors are SQLAlchemy's types; the engine's ``before_cursor_execute``
    listeners still see the statement."""
    many = not isinstance(params, Mapping)
    rows: Sequence[Mapping[str, Any]] = params if many else [params]  # type: ignore[assignment,list-item]
    if not rows:
        return
    connection = session.connection()
    sql, bind, _ = _compiled(statement, connection.dialect, tuple(rows[0]))
    if sql is None or connection.dialect.driver not in ("psycopg", "pysqlite"):
        session.execute(statement, list(rows) if many else dict(rows[0]))
        return
    with driver_errors(connection):
        if many and len(rows) > 1:
            _run_many(connection, sql, [bind(row) for row in rows])
        else:
            _run(connection, sql, bind(rows[0]))


def write_returning(session: Session, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """:func:`write` for one statement that returns rows (``RETURNING``): its rows, converted as
    SQLAlchemy would. Not inside :func:`pipelined` (its rows are read at once)."""
    connection = session.connection()
    sql, bind, convert = _compiled(statement, connection.dialect, tuple(params))
    if sql is None or connection.dialect.driver not in ("psycopg", "pysqlite"):
        return [tuple(row) for row in session.execute(statement, dict(params))]
    with driver_errors(connection):
        return convert(_run(connection, sql, bind(params)).fetchall())


def _run(connection: Connection, sql: str, params: Any) -> Any:
    """Execute on the driver's connection; the driver's cursor."""
    driver: Any = connection.connection.driver_connection
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, None, sql, params, None, False)
    if connection.dialect.driver == "psycopg":
        # Prepared once per connection: the statement's text never changes.
        return driver.execute(sql, params, prepare=True)
    return driver.execute(sql, params)


def _run_many(connection: Connection, sql: str, params: list[Any]) -> None:
    driver: Any = connection.connection.driver_connection
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, None, sql, params, None, True)
    driver.cursor().executemany(sql, params)


@contextmanager
def driver_errors(connection: Connection) -> Iterator[None]:
    """The driver's errors handled as SQLAlchemy handles them: raised as its types (what callers,
    and ``is_transient``, expect), and a connection the server closed invalidated, so that the
    rollback after it does not fail in turn and hide the server's reason."""
    try:
        yield
    except DBAPIError:
        raise
    except connection.dialect.loaded_dbapi.Error as exc:
        connection._handle_dbapi_exception(exc, None, None, None, None)


# What a statement compiles to for a dialect: its SQL (None where it cannot be compiled once:
# an expanding IN), what turns parameters into the driver's (a dict, or a tuple for a positional
# paramstyle such as SQLite's), and what turns the driver's rows into SQLAlchemy's values.
_Ready = tuple[str | None, Callable[[Mapping[str, Any]], Any], Callable[[list[Any]], list[Any]]]
_ready: dict[tuple[Executable, str, str, tuple[str, ...] | None], _Ready] = {}
# Statements are meant to be built once (module constants): one built per call would be a new
# key every time. Past this many the cache starts afresh rather than grow without end.
_READY_MAX = 4096


def _compiled(statement: Executable, dialect: Dialect, column_keys: tuple[str, ...] | None = None) -> _Ready:
    """``column_keys``: for an INSERT or UPDATE without VALUES of its own, the columns the
    parameters set (each parameter named after its column, as in SQLAlchemy's executemany)."""
    keys = column_keys if isinstance(statement, ValuesBase) and not statement._values else None
    key = (statement, dialect.name, dialect.driver, keys)
    found = _ready.get(key)
    if found is None:
        if len(_ready) >= _READY_MAX:
            _ready.clear()
        options = {"column_keys": list(keys)} if keys is not None else {}
        compiled = statement.compile(dialect=dialect, **options)  # type: ignore[attr-defined]
        # The dialect's own processors, as SQLAlchemy's execution applies them (a JSON value
        # wrapped for psycopg, a datetime formatted for SQLite).
        processors = {name: processor for name, processor in compiled._bind_processors.items() if processor}
        order = compiled.positiontup if dialect.positional else None
        # Columns the parameters leave out whose defaults SQLAlchemy computes in Python as it
        # executes: a constant is filled in here; anything else keeps the statement with
        # SQLAlchemy (below).
        # (An INSERT's are its columns' ``default``, an UPDATE's their ``onupdate``.)
        prefetch = [
            *((c, c.default) for c in getattr(compiled, "insert_prefetch", ())),
            *((c, c.onupdate) for c in getattr(compiled, "update_prefetch", ())),
        ]
        constants = {
            column.key: default.arg
            for column, default in prefetch
            if default is not None and getattr(default, "is_scalar", False)
        }
        computed = len(constants) < len(prefetch)

        def bind(params: Mapping[str, Any]) -> Any:
            values: dict[str, Any] = compiled.construct_params(constants | dict(params) if constants else dict(params))
            for name, processor in processors.items():
                if name in values:
                    values[name] = processor(values[name])
            return values if order is None else tuple(values[name] for name in order)

        sql: str | None = compiled.string
        if "POSTCOMPILE" in compiled.string or computed:
            sql = None  # rendered, or completed, per execution by SQLAlchemy
        found = _ready[key] = (sql, bind, _converter(statement, dialect))
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
