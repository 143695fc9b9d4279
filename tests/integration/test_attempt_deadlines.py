"""An attempt's deadline, kept on its row: it times the attempt out once, not after a report, and
not twice when two timer loops race (SQLite and PostgreSQL, on a clock the test drives; no worker
runs, so nothing reports unless the test does)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from models.enums import SagaState
from models.tables import SagaRun, StepAttempt, StepRun
from orchestrator.service.timers import RETRY_FAILED_S, TimerService
from orchestrator.service.wiring import Wiring
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring, deadlined_saga
from tests.support import RedisTarget

TIMEOUT_MS = 1000


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis, watchdog_grace_s=1) as built:
        yield built


def started(wiring: Wiring) -> str:
    # The retry waits a minute: only the deadline moves the attempt on within a test.
    return deadlined_saga(wiring, timeout_ms=TIMEOUT_MS, retry_ms=60_000)


def attempts(wiring: Wiring, saga_id: str) -> list[tuple[int, str, datetime | None]]:
    with wiring.sessions() as session:
        rows = session.scalars(select(StepAttempt).where(StepAttempt.saga_id == saga_id).order_by(StepAttempt.attempt))
        return [(a.attempt, a.outcome.value, a.deadline_at) for a in rows]


def clock_at(wiring: Wiring, saga_id: str, after: timedelta) -> Any:
    with wiring.sessions() as session:
        saga = session.get(SagaRun, saga_id)
        assert saga is not None
        start = saga.created_at
    return lambda: start + after


def test_an_attempt_times_out_at_its_deadline_once(wiring: Wiring) -> None:
    saga_id = started(wiring)
    [(_, outcome, deadline)] = attempts(wiring, saga_id)
    assert outcome == "running" and deadline is not None

    # Grace included: the timeout plus watchdog_grace_s.
    early = TimerService(
        wiring.sessions,
        wiring.settings,
        wiring.dispatcher,
        clock=clock_at(wiring, saga_id, timedelta(milliseconds=TIMEOUT_MS + 900)),
    )
    assert early.tick() == 0
    assert attempts(wiring, saga_id)[0][1] == "running"

    late = clock_at(wiring, saga_id, timedelta(milliseconds=TIMEOUT_MS + 1100))
    loops = [TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=late) for _ in range(2)]
    fired: list[int] = []
    racers = [threading.Thread(target=lambda loop=loop: fired.append(loop.tick())) for loop in loops]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(fired) == [0, 1]  # two loops at once: one of them times it out
    assert [a[:2] for a in attempts(wiring, saga_id)] == [(1, "timed_out")]
    assert loops[0].tick() == 0  # settled attempts leave the deadline index
    # The retry waits on its own (durable) timer, a minute away here.
    with wiring.sessions() as session:
        saga = session.get(SagaRun, saga_id)
        assert saga is not None and saga.state.value == "running" and saga.steps[0].attempts == 1


def test_a_report_before_the_deadline_leaves_nothing_to_fire(wiring: Wiring) -> None:
    saga_id = started(wiring)
    report = {
        "kind": "step_report",
        "saga_id": saga_id,
        "step_index": 0,
        "phase": "forward",
        "attempt": 1,
        "outcome": "succeeded",
        "result": {"ok": True},
        "worker": "test",
    }
    assert wiring.coordinator.handle([report]).applied == 1
    late = clock_at(wiring, saga_id, timedelta(milliseconds=TIMEOUT_MS + 5000))
    assert TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=late).tick() == 0
    assert [a[:2] for a in attempts(wiring, saga_id)] == [(1, "succeeded")]


def test_a_running_attempt_of_a_finished_saga_is_dropped_from_the_watch(wiring: Wiring) -> None:
    saga_id = started(wiring)
    with wiring.sessions.begin() as session:
        saga = session.get(SagaRun, saga_id)
        assert saga is not None
        saga.state = SagaState.completed
    late = clock_at(wiring, saga_id, timedelta(milliseconds=TIMEOUT_MS + 5000))
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=late)
    loop.tick()
    [(_, outcome, deadline)] = attempts(wiring, saga_id)
    assert (outcome, deadline) == ("running", None)
    assert loop.tick() == 0


def test_an_attempt_that_fails_to_time_out_is_tried_later_and_the_rest_go_on(wiring: Wiring) -> None:
    healthy = started(wiring)
    broken = started(wiring)
    # Break the second saga for real: without its step rows, timing its attempt out raises.
    with wiring.sessions.begin() as session:
        session.execute(delete(StepRun).where(StepRun.saga_id == broken))
    late = clock_at(wiring, broken, timedelta(milliseconds=TIMEOUT_MS + 5000))
    assert TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=late).tick() == 1
    assert [a[:2] for a in attempts(wiring, healthy)] == [(1, "timed_out")]
    [(_, outcome, deadline)] = attempts(wiring, broken)
    assert outcome == "running" and deadline is not None
    assert _utc(deadline) == late() + timedelta(seconds=RETRY_FAILED_S)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
