"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from models import tables, work_tables  # noqa: F401  (every table on Base.metadata)
from models.base import Base
from orchestrator.db import make_engine
from orchestrator.migrate import upgrade
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
