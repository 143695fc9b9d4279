"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.sql.elements import ClauseElement

from models import agent_tables, gate_tables, routing_tables, tables, trace_tables, work_tables  # noqa: F401  (every table on Base.metadata)
from models.base import Base
from orchestrator.storage.db import make_engine
from orchestrator.storage.migrate import upgrade
from tests.conftest import BACKENDS, database_url, migrated_database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_the_models_and_run_twice(backend: str, tmp_path: Path) -> None:
    for url in database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            upgrade(engine)
            upgrade(engine)  # idempotent: `workyard up` runs it on every start
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == []
        finally:
            engine.dispose()


def _plain(described: object) -> str:
    """What the inspector says, as text that compares (a partial index's WHERE is a clause object)."""
    if isinstance(described, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in sorted(described.items())) + "}"
    if isinstance(described, list | tuple):
        return "[" + ", ".join(map(_plain, described)) + "]"
    return str(described) if isinstance(described, ClauseElement) else repr(described)


def _schema(engine: Engine) -> dict[str, object]:
    """Everything a schema declares, as the database describes it, and the migrations' version."""
    found = inspect(engine)
    described: dict[str, object] = {}
    for table in sorted(found.get_table_names()):
        described[table] = (
            [(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in found.get_columns(table)],
            _plain(found.get_pk_constraint(table)),
            sorted(map(_plain, found.get_foreign_keys(table))),
            sorted(map(_plain, found.get_indexes(table))),
            sorted(map(_plain, found.get_unique_constraints(table))),
            sorted(map(_plain, found.get_check_constraints(table))),
        )
    if engine.dialect.name == "postgresql":
        described["sequences"] = sorted(found.get_sequence_names())
    with engine.connect() as conn:
        described["version"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        # Nothing else: the migrations write no rows into a fresh database.
        described["rows"] = {
            t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in found.get_table_names()
        }
    return described


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migrated_databases_tests_start_from_are_what_upgrade_makes(backend: str, tmp_path: Path) -> None:
    """The API tests get their databases from tests/migrated.py (a copy, or the statements replayed)."""
    for where in ("upgraded", "copy"):
        (tmp_path / where).mkdir()
    for url in database_url(backend, tmp_path / "upgraded"):
        upgraded = make_engine(url)
        try:
            upgrade(upgraded)
            expected = _schema(upgraded)
        finally:
            upgraded.dispose()
    for _ in range(2):  # the first makes the template or records the statements; the second uses them
        for url in migrated_database_url(backend, tmp_path / "copy"):
            copied = make_engine(url)
            try:
                assert _schema(copied) == expected
            finally:
                copied.dispose()
        (tmp_path / "copy" / "workyard.db").unlink(missing_ok=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_watchdog_timers_become_attempt_deadlines(backend: str, tmp_path: Path) -> None:
    """0010 moves an attempt's deadline from the timer table onto the attempt, for running sagas."""
    for url in database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            upgrade(engine, "0009")
            due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO saga_runs (id, template_name, template_version, state, input, input_hash, "
                        "results, created_at, updated_at, sla_breach_count, sla_events) VALUES ('s1', 't', '1.0.0', "
                        "'running', '{}', 'h', '{}', :now, :now, 0, '[]')"
                    ),
                    {"now": due},
                )
                for attempt in (1, 2):
                    conn.execute(
                        text(
                            "INSERT INTO step_attempts (saga_id, step_index, step_name, phase, attempt, outcome, "
                            "dispatched_at) VALUES ('s1', 0, 'one', 'forward', :n, :outcome, :now)"
                        ),
                        {"n": attempt, "outcome": "failed" if attempt == 1 else "running", "now": due},
                    )
                conn.execute(
                    text(
                        "INSERT INTO timers (key, kind, saga_id, payload, due_at, created_at) VALUES "
                        "('watchdog:s1:0:forward:2', 'watchdog', 's1', :payload, :due, :due), "
                        "('dispatch:s1:1:forward:1', 'dispatch', 's1', :retry, :due, :due)"
                    ),
                    {
                        "payload": json.dumps({"index": 0, "phase": "forward", "attempt": 2}),
                        "retry": json.dumps({"index": 1, "phase": "forward", "attempt": 1}),
                        "due": due,
                    },
                )
            upgrade(engine)
            with engine.connect() as conn:
                deadlines = conn.execute(text("SELECT attempt, deadline_at FROM step_attempts ORDER BY attempt")).all()
                kinds = conn.execute(text("SELECT kind FROM timers")).scalars().all()
            assert [(n, d if d is None else _as_utc(d)) for n, d in deadlines] == [(1, None), (2, due)]
            assert kinds == ["dispatch"]  # other timers stay
        finally:
            engine.dispose()


def _as_utc(value: datetime | str) -> datetime:
    # SQLite hands a raw query's timestamp back as text.
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
