"""Databases at the migrations' head without running alembic for each test.

A test that needs a fresh, migrated database (most API tests: hundreds of them) used to run every
migration for itself: alembic loads its scripts and SQLite copies tables in batch mode, about a
second of CPU per database, more than most of those tests take. Here the migrations run once per
test process and backend:

- SQLite: into a template file, which each test gets a byte-for-byte copy of;
- PostgreSQL: into a schema of their own, recording every statement they send; each test's fresh
  schema gets the same statements, replayed in one transaction as ``upgrade`` runs them.

Either way a test's database is the one ``upgrade`` would have made, not a model's
``create_all``; tests/integration/test_migrations.py checks that it is, and checks the migrations
themselves by running them.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from orchestrator.storage.db import make_engine
from orchestrator.storage.migrate import upgrade
from tests.support import postgres_schema

# (statement, parameters or None for none at all, executemany) as the migrations sent them.
Statement = tuple[str, Any, bool]

_sqlite_template: Path | None = None
_postgres_statements: dict[str, list[Statement]] = {}


def sqlite_database(tmp_path: Path) -> str:
    """A migrated SQLite database in ``tmp_path`` (a copy of this process's template)."""
    global _sqlite_template
    if _sqlite_template is None:
        directory = Path(tempfile.mkdtemp(prefix="workyard-migrated-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        template = directory / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # the last connection closed: SQLite moves its write-ahead log into the file
        _sqlite_template = template
    target = tmp_path / "workyard.db"
    shutil.copyfile(_sqlite_template, target)
    for suffix in ("-wal", "-shm"):  # none after a clean close; copied along if one were left
        if (log := Path(f"{_sqlite_template}{suffix}")).exists():
            shutil.copyfile(log, f"{target}{suffix}")
    return f"sqlite:///{target}"


def postgres_statements(base_url: str) -> list[Statement]:
    """What ``upgrade`` sends to a fresh PostgreSQL schema, recorded once per process and server."""
    if base_url not in _postgres_statements:
        with postgres_schema(base_url) as url:
            engine = make_engine(url)
            recorded: list[Statement] = []

            @event.listens_for(engine, "before_cursor_execute")
            def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
                recorded.append((statement, None if context.no_parameters else parameters, many))

            try:
                upgrade(engine)
            finally:
                engine.dispose()
            schema = str(make_url(url).query["options"]).removeprefix("-csearch_path=")
            # Replayed in another schema, a statement naming this one would reach into it.
            assert not any(schema in str(s) or schema in str(p) for s, p, _ in recorded), schema
        _postgres_statements[base_url] = recorded
    return _postgres_statements[base_url]


def replay(engine: Engine, statements: list[Statement]) -> None:
    """Send ``statements`` in one transaction, as ``upgrade`` sent them."""
    with closing(engine.raw_connection()) as connection:
        with closing(connection.cursor()) as cursor:
            for statement, parameters, many in statements:
                if many:
                    cursor.executemany(statement, parameters)
                elif parameters is None:
                    cursor.execute(statement)
                else:
                    cursor.execute(statement, parameters)
        connection.commit()


def postgres_database(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema at the migrations' head; dropped on the way out."""
    statements = postgres_statements(base_url)
    with postgres_schema(base_url) as url:
        engine = make_engine(url)
        try:
            replay(engine, statements)
        finally:
            engine.dispose()
        yield url
