"""A report that never reached the orchestrator (taken off the queue by a process that died before
it held it, or gone with a Redis that lost its data) is found in the workers' store and applied,
instead of the attempt waiting for its deadline (the step watchdog's hour without timeout_ms).
SQLite and PostgreSQL, on a clock the test drives; no worker runs: the test stores the report as
a worker would, and sends no message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from config import keys
from models.enums import Outcome, Phase
from models.messages import StepReport
from models.tables import SagaRun, StepAttempt
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service import recovery as recovery_module
from orchestrator.service.recovery import ReportRecovery
from orchestrator.service.wiring import Wiring
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring
from tests.support import RedisTarget
from workers.celery.app import broker_redis_client
from workers.store import StepStore


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis) as built:
        yield built


def submitted(wiring: Wiring) -> tuple[str, datetime]:
    name = f"recovered.{uuid.uuid4().hex[:8]}"
    steps = [{"name": n, "capability": "alpha", "handler": n} for n in ("one", "two")]
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    saga = submit_saga(wiring.sessions, wiring.settings, template=name, input={"tag": "t"}).saga
    with wiring.sessions() as session:
        row = session.get(SagaRun, saga.id)
        assert row is not None
        return saga.id, row.created_at


def outcomes(wiring: Wiring, saga_id: str) -> list[tuple[str, int, str]]:
    with wiring.sessions() as session:
        rows = session.scalars(select(StepAttempt).where(StepAttempt.saga_id == saga_id).order_by(StepAttempt.id))
        return [(a.step_name, a.attempt, a.outcome.value) for a in rows]


def store_report_as_a_worker_would(wiring: Wiring, saga_id: str) -> None:
    store = StepStore(wiring.store_client, claim_ttl_ms=5000, dedup_ttl_s=3600)
    key = f"{saga_id}:one"
    assert store.begin(key, saga_id, 1, "worker-a:1").decision.value == "run"
    report = StepReport(
        saga_id=saga_id,
        step_index=0,
        phase=Phase.forward,
        attempt=1,
        outcome=Outcome.succeeded,
        result={"done": True},
        worker="worker-a",
        finished_at=datetime.now(UTC),
    )
    # No push: the message is what got lost; only the store has the report.
    store.finish(key, saga_id, 1, "worker-a:1", result_json='{"done": true}', report_json=report.model_dump_json())


def test_a_lost_report_is_applied_from_the_workers_store(wiring: Wiring) -> None:
    saga_id, created = submitted(wiring)
    store_report_as_a_worker_would(wiring, saga_id)
    timeout = timedelta(seconds=wiring.settings.visibility_timeout_s)

    # Within the visibility timeout the report may still be on its way (or held by an
    # orchestrator that died and is about to be given back): nothing is looked up yet.
    soon = ReportRecovery(
        wiring.sessions, wiring.settings, wiring.coordinator, wiring.store_client, clock=lambda: created + timeout / 2
    )
    soon.tick()
    assert outcomes(wiring, saga_id) == [("one", 1, "running")]

    later = ReportRecovery(
        wiring.sessions, wiring.settings, wiring.coordinator, wiring.store_client, clock=lambda: created + timeout * 2
    )
    later.tick()
    assert outcomes(wiring, saga_id) == [("one", 1, "succeeded"), ("two", 1, "running")]
    # Again (two orchestrators, or the message turning up after all): nothing applies twice.
    later.tick()
    assert outcomes(wiring, saga_id) == [("one", 1, "succeeded"), ("two", 1, "running")]


def test_an_attempt_without_a_stored_report_is_left_to_its_deadline(wiring: Wiring) -> None:
    saga_id, created = submitted(wiring)
    late = created + timedelta(hours=2)
    ReportRecovery(wiring.sessions, wiring.settings, wiring.coordinator, wiring.store_client, clock=lambda: late).tick()
    assert outcomes(wiring, saga_id) == [("one", 1, "running")]


def test_a_dispatch_no_worker_began_is_sent_again_once_its_queue_is_empty(wiring: Wiring) -> None:
    """A worker killed between taking a dispatch off the queue and recording it as held takes it
    along: no worker ever begins the attempt. Once the attempt has run past the visibility
    timeout with its queue empty, the dispatch is sent again; then again only after twice as long."""
    name = f"unbegun.{uuid.uuid4().hex[:8]}"
    steps = [{"name": "one", "capability": "alpha", "handler": "one"}]
    register_template(wiring.sessions, parse_template({"name": name, "version": "1.0.0", "steps": steps}))
    done = submit_saga(wiring.sessions, wiring.settings, template=name, input={"tag": "t"})
    wiring.dispatcher.publish(done.outbox)
    broker = broker_redis_client(wiring.settings)
    assert broker is not None
    queue = keys.capability_queue("alpha")
    assert broker.llen(queue) == 1
    broker.delete(queue)  # the dispatch is lost with the worker that took it
    with wiring.sessions() as session:
        row = session.get(SagaRun, done.saga.id)
        assert row is not None
        created = row.created_at
    timeout = timedelta(seconds=wiring.settings.visibility_timeout_s)
    now = [created + timeout * 2]

    def recovery() -> ReportRecovery:
        return ReportRecovery(
            wiring.sessions,
            wiring.settings,
            wiring.coordinator,
            wiring.store_client,
            broker=broker,
            clock=lambda: now[0],
        )

    sweeper = recovery()
    sweeper.tick()
    assert broker.llen(queue) == 1, "the lost dispatch was not sent again"
    sweeper.tick()
    assert broker.llen(queue) == 1, "sent again while the queue still held it"
    broker.delete(queue)  # lost again
    sweeper.tick()
    assert broker.llen(queue) == 0, "sent again before its wait was up"
    now[0] += timeout
    sweeper.tick()
    assert broker.llen(queue) == 1
    assert outcomes(wiring, done.saga.id) == [("one", 1, "running")]  # the same attempt, dispatched again

    # An attempt a worker began (its seen marker is set) is left to its worker.
    broker.delete(queue)
    StepStore(wiring.store_client, claim_ttl_ms=5000, dedup_ttl_s=3600).begin(
        f"{done.saga.id}:one", done.saga.id, 1, "worker-a:1"
    )
    now[0] += timeout * 4
    sweeper.tick()
    assert broker.llen(queue) == 0
    broker.close()


def test_attempts_are_looked_at_a_page_at_a_time_so_old_ones_hide_none(
    wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long-running attempts (people's work items, hour-long steps) fill the oldest page; the
    passes that follow look further, so a newer attempt's lost report is still found."""
    monkeypatch.setattr(recovery_module, "BATCH", 2)
    older = [submitted(wiring) for _ in range(2)]  # running, no report: long steps
    saga_id, created = submitted(wiring)
    store_report_as_a_worker_would(wiring, saga_id)
    late = created + timedelta(seconds=wiring.settings.visibility_timeout_s * 2)
    sweeper = ReportRecovery(
        wiring.sessions, wiring.settings, wiring.coordinator, wiring.store_client, clock=lambda: late
    )
    sweeper.tick()
    sweeper.tick()
    assert outcomes(wiring, saga_id)[0] == ("one", 1, "succeeded")
    assert all(outcomes(wiring, s)[0] == ("one", 1, "running") for s, _ in older)
