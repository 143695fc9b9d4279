"""A batch of reports is written with one UPDATE statement per table (an executemany), however
many sagas it moves: the coordinator's cost per report depends on it (SQLite and PostgreSQL; the
test applies the reports itself, no worker runs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from models.enums import SagaState
from models.tables import SagaRun
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.wiring import Wiring
from orchestrator.work import webhooks
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget

SAGAS = 5


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


def report(saga_id: str, index: int) -> dict[str, Any]:
    return {
        "kind": "step_report",
        "saga_id": saga_id,
        "step_index": index,
        "phase": "forward",
        "attempt": 1,
        "outcome": "succeeded",
        "result": {"step": index},
        "worker": "test",
    }


def test_a_batch_that_finishes_sagas_updates_each_table_in_one_statement(wiring: Wiring) -> None:
    name = f"batched.{uuid.uuid4().hex[:8]}"
    steps = [{"name": n, "capability": "alpha", "handler": n} for n in ("one", "two")]
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    ids = [submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": n}).saga.id for n in range(SAGAS)]
    assert wiring.coordinator.handle([report(i, 0) for i in ids]).applied == SAGAS

    updates: list[tuple[str, bool]] = []

    def count(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, executemany: bool) -> None:
        if statement.startswith("UPDATE"):
            updates.append((statement.split()[1], executemany))

    # Finishing a saga looks up its webhooks (not cached now): that query must not flush the
    # batch's changes so far, row by row, ahead of the batch's own bulk UPDATEs.
    webhooks._cache.clear()
    event.listen(wiring.engine, "before_cursor_execute", count)
    try:
        assert wiring.coordinator.handle([report(i, 1) for i in ids]).applied == SAGAS
    finally:
        event.remove(wiring.engine, "before_cursor_execute", count)

    assert sorted(updates) == [("saga_runs", True), ("step_attempts", True), ("step_runs", True)]
    with wiring.sessions() as session:
        states = session.scalars(select(SagaRun.state).where(SagaRun.id.in_(ids))).all()
    assert states == [SagaState.completed] * SAGAS
