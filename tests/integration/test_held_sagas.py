"""Sagas held under their locks (``orchestrator.storage.held``): read once per transaction, the
same objects when asked again, what changed on them written as the transaction commits and
nothing when it rolls back (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from models.enums import Outcome, SagaState, StepState
from models.tables import SagaRun, StepAttempt, StepRun
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.wiring import Wiring
from orchestrator.storage.db import lock_sagas
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


def saga(wiring: Wiring) -> str:
    name = f"held.{uuid.uuid4().hex[:8]}"
    steps = [{"name": n, "capability": "alpha", "handler": n} for n in ("one", "two")]
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    return submit_saga(wiring.sessions, wiring.settings, template=name, input={"n": 1}).saga.id


def test_a_saga_locked_twice_is_one_object_written_as_the_transaction_commits(wiring: Wiring) -> None:
    saga_id = saga(wiring)
    with wiring.sessions.begin() as session:
        held = lock_sagas(session, [saga_id, "no-such-saga"], running=True)
        assert list(held) == [saga_id]
        run = held[saga_id]
        run.error = "changed"
        run.steps[1].state = StepState.retry_wait
        [attempt] = session.uow.held.running_attempts(session, [saga_id])
        assert (attempt.step_index, attempt.outcome) == (0, Outcome.running)
        attempt.outcome = Outcome.failed
        again = lock_sagas(session, [saga_id])
        assert again[saga_id] is run and again[saga_id].error == "changed"
        # Settled in this transaction: no longer among the running ones.
        assert session.uow.held.running_attempts(session, [saga_id]) == []
    with wiring.sessions() as session:
        assert session.scalar(select(SagaRun.error).where(SagaRun.id == saga_id)) == "changed"
        states = session.scalars(select(StepRun.state).where(StepRun.saga_id == saga_id).order_by(StepRun.index))
        assert list(states) == [StepState.running, StepState.retry_wait]
        outcome = session.scalar(select(StepAttempt.outcome).where(StepAttempt.saga_id == saga_id))
        assert outcome is Outcome.failed


def test_a_transaction_rolled_back_writes_nothing_it_held(wiring: Wiring) -> None:
    saga_id = saga(wiring)
    with pytest.raises(RuntimeError), wiring.sessions.begin() as session:
        lock_sagas(session, [saga_id])[saga_id].state = SagaState.compensating
        raise RuntimeError("rolled back")
    with wiring.sessions.begin() as session:
        run = lock_sagas(session, [saga_id])[saga_id]
        assert run.state is SagaState.running
        assert not session.uow.held.attempts  # read only when asked for
