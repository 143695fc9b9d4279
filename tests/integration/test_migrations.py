"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from models import agent_tables, tables, work_tables  # noqa: F401  (every table on Base.metadata)
from models.base import Base
from orchestrator.storage.db import make_engine
from orchestrator.storage.migrate import upgrade
from tests.conftest import BACKENDS, database_url


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
