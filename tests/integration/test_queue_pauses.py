"""Pauses of a template or a capability queue on real workers and two orchestrators, on SQLite and
PostgreSQL, with messages delivered once and twice: what they hold, the clocks they stop, what a
resume sends, tenants, the release of what a resume left held. (The API's answers: in
test_queue_pauses_api, whose fresh Redis per test would pull the rug from under this module's
stack.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import delete, select

from models.api import SagaRead
from models.enums import PauseKind
from models.tables import QueuePause, StepAttempt, Timer
from orchestrator.errors import Conflict
from orchestrator.sagas.queue_pauses import pause_history, pause_queue, resume_queue
from orchestrator.storage.unit_of_work import Outgoing
from tests.conftest import database_url
from tests.integration.harness import TENANT, Harness, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually

# Short, so that a pause written here is seen by the orchestrators well within a running step.
REFRESH_S = 0.2
# How long the step before a paused one runs: many refreshes long.
STEP_MS = 2500


@pytest.fixture(scope="module")
def harness(
    backend: str, delivered_twice: bool, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """A stack with two orchestrators (each must learn of a pause written here) per backend and
    delivery mode."""
    tmp = tmp_path_factory.mktemp(f"pauses-{backend}")
    for url in database_url(backend, tmp):
        settings = stack_settings(
            tmp, url, redis_target, pause_refresh_s=REFRESH_S, fault_duplicate_delivery=delivered_twice
        )
        harness = Harness(settings, redis_target, orchestrators=2)
        try:
            harness.start()
            harness.register(THREE_STEPS)
            yield harness
        finally:
            harness.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _publish(harness: Harness) -> Any:
    def publish(outbox: list[Outgoing]) -> None:
        harness.wiring.dispatcher.publish(outbox)

    return publish


def _pause(harness: Harness, kind: PauseKind, name: str, tenant: str = TENANT) -> None:
    pause_queue(harness.wiring.sessions, kind, name, tenant=tenant, actor="user:ops", reason=f"hold {name}")


def _resume(harness: Harness, kind: PauseKind, name: str, tenant: str = TENANT) -> int:
    _, sent = resume_queue(
        harness.wiring.sessions,
        harness.settings,
        _publish(harness),
        kind,
        name,
        tenant=tenant,
        actor="user:ops",
        reason=f"go on {name}",
    )
    return sent


def _held(harness: Harness, saga_id: str, key: str) -> SagaRead:
    return eventually(
        lambda: (s := harness.saga(saga_id)).held_by == key and s, timeout=30, what=f"saga {saga_id} held by {key}"
    )


def _clocks(harness: Harness, saga_id: str) -> dict[str, datetime]:
    with harness.wiring.sessions() as session:
        return {t.kind: t.due_at for t in session.scalars(select(Timer).where(Timer.saga_id == saga_id))}


def _attempts(harness: Harness, saga_id: str, step: str) -> list[StepAttempt]:
    with harness.wiring.sessions() as session:
        query = select(StepAttempt).where(StepAttempt.saga_id == saga_id, StepAttempt.step_name == step)
        return list(session.scalars(query))


def _clocked(harness: Harness) -> str:
    """A three-step template of its own with a deadline, an SLA, and a timeout on step two."""
    name = f"it.paused.{_tag()}"
    steps = [dict(s) for s in THREE_STEPS["steps"]]
    steps[1]["timeout_ms"] = 20_000
    doc = {**THREE_STEPS, "name": name, "steps": steps, "deadline_ms": 600_000, "sla": {"target_ms": 300_000}}
    harness.register(doc)
    return name


def test_a_capability_pause_holds_the_next_step_on_it_and_stops_its_clocks(harness: Harness) -> None:
    name = _clocked(harness)
    tag = _tag()
    saga_id = harness.submit(name, {"tag": tag, "behaviour": {"one": {"sleep_ms": STEP_MS}}})
    eventually(lambda: harness.calls(tag).get("one") == 1, timeout=30, what="step one to start")
    before = _clocks(harness, saga_id)
    assert set(before) == {"saga_deadline", "saga_sla_breach"}
    # Two runs on beta: paused while one runs.
    _pause(harness, PauseKind.capability, "beta")
    saga = _held(harness, saga_id, f"capability:{TENANT}:beta")
    assert saga.state == "running" and saga.held_at is not None and saga.paused_at is None
    assert [s.state for s in saga.steps] == ["succeeded", "pending", "pending"]
    assert _attempts(harness, saga_id, "two") == []  # not dispatched: no attempt, no deadline running
    assert saga.hold is not None and (saga.hold.actor, saga.hold.reason) == ("user:ops", "hold beta")
    assert all(due.year > 3000 for due in _clocks(harness, saga_id).values())  # parked: none comes due
    with pytest.raises(Conflict, match="paused already"):
        _pause(harness, PauseKind.capability, "beta")

    # Released by the resume, or by an orchestrator's sweep that saw the pause gone first.
    assert _resume(harness, PauseKind.capability, "beta") in (0, 1)
    done = harness.wait_final(saga_id)
    assert done.state == "completed" and done.held_by is None and done.held_at is None
    assert harness.calls(tag) == {"one": 1, "two": 1, "three": 1}
    # Two's attempt, and so its deadline, began only once it was sent.
    [two] = _attempts(harness, saga_id, "two")
    assert saga.held_at is not None and two.dispatched_at >= saga.held_at
    assert two.deadline_at is not None and two.deadline_at > two.dispatched_at
    # Its clocks stood still while it was held: they are later by as much.
    assert done.paused_ms > 0
    with harness.wiring.sessions() as session:
        history = pause_history(session, tenant=TENANT, kind=PauseKind.capability, name="beta", limit=10)
    assert [(e.action, e.actor, e.reason, e.tenant) for e in history][:2] == [
        ("resume", "user:ops", "go on beta", TENANT),
        ("pause", "user:ops", "hold beta", TENANT),
    ]
    assert history[0].detail == {"held": 1}


def test_resuming_moves_the_clocks_by_the_time_held(harness: Harness) -> None:
    name = _clocked(harness)
    _pause(harness, PauseKind.template, name)
    try:
        # One runs a while once sent: its clocks are still there to look at.
        saga_id = harness.submit(name, {"tag": _tag(), "behaviour": {"one": {"sleep_ms": 1500}}})
        # Held at its submit: parked from the start, in the same transaction as it was armed.
        saga = harness.saga(saga_id)
        assert saga.held_by == f"template:{TENANT}:{name}" and saga.attempts == []
        parked = _clocks(harness, saga_id)
        assert set(parked) == {"saga_deadline", "saga_sla_breach"} and all(d.year > 3000 for d in parked.values())
    finally:
        _resume(harness, PauseKind.template, name)
    after = harness.saga(saga_id)
    assert after.held_by is None and after.state == "running"
    clocks = _clocks(harness, saga_id)
    for kind, target_ms in (("saga_deadline", 600_000), ("saga_sla_breach", 300_000)):
        due_ms = (clocks[kind] - after.created_at).total_seconds() * 1000
        assert due_ms == pytest.approx(target_ms + after.paused_ms, abs=1), kind
    assert harness.wait_final(saga_id).state == "completed"


def test_a_template_pause_holds_new_sagas_which_resume_sends_in_order(harness: Harness) -> None:
    name = _clocked(harness)
    _pause(harness, PauseKind.template, name)
    tags = [_tag() for _ in range(3)]
    ids = [harness.submit(name, {"tag": tag}) for tag in tags]
    for saga_id in ids:
        saga = harness.saga(saga_id)
        assert saga.state == "running" and saga.held_by == f"template:{TENANT}:{name}" and saga.attempts == []
    assert all(harness.calls(tag) == {} for tag in tags)
    # Another template's sagas go on meanwhile.
    other = harness.wait_final(harness.submit("it.three", {"tag": _tag()}))
    assert other.state == "completed"

    assert _resume(harness, PauseKind.template, name) <= 3
    finished = [harness.wait_final(saga_id) for saga_id in ids]
    assert all(s.state == "completed" for s in finished)
    firsts = [next(a for a in s.attempts if a.step_name == "one").dispatched_at for s in finished]
    assert firsts == sorted(firsts)  # sent oldest first
    with pytest.raises(Conflict, match="not paused"):
        _resume(harness, PauseKind.template, name)


def test_a_tenants_pause_does_not_hold_another_tenants_sagas(harness: Harness) -> None:
    harness.register(THREE_STEPS, tenant="globex")
    _pause(harness, PauseKind.capability, "alpha", tenant="globex")
    try:
        ours = harness.submit("it.three", {"tag": _tag()})
        theirs = harness.submit("it.three", {"tag": _tag()}, tenant="globex")
        assert harness.wait_final(ours).state == "completed"
        held = harness.saga(theirs)
        assert held.held_by == "capability:globex:alpha" and held.state == "running"
    finally:
        _resume(harness, PauseKind.capability, "alpha", tenant="globex")
    assert harness.wait_final(theirs).state == "completed"


def test_an_operators_pause_holds_every_tenant(harness: Harness) -> None:
    tag = _tag()
    _pause(harness, PauseKind.capability, "beta", tenant="*")
    try:
        # One runs a while: the orchestrators read the pause (within REFRESH_S) before two is due.
        saga_id = harness.submit("it.three", {"tag": tag, "behaviour": {"one": {"sleep_ms": STEP_MS}}})
        saga = _held(harness, saga_id, "capability:*:beta")
        assert [s.state for s in saga.steps] == ["succeeded", "pending", "pending"]
    finally:
        _resume(harness, PauseKind.capability, "beta", tenant="*")
    assert harness.wait_final(saga_id).state == "completed"


def test_what_a_resume_left_held_is_released_by_the_orchestrators(harness: Harness) -> None:
    """A dispatch held by a process that had not yet seen a resume, or a resume whose process died
    before it sent what it held: the pause is gone, its sagas are held still. The orchestrators'
    sweep sends them."""
    name = _clocked(harness)
    _pause(harness, PauseKind.template, name)
    ids = [harness.submit(name, {"tag": _tag()}) for _ in range(2)]
    assert all(harness.saga(i).held_by is not None for i in ids)
    with harness.wiring.sessions.begin() as session:
        session.execute(delete(QueuePause).where(QueuePause.name == name))
    for saga_id in ids:
        assert harness.wait_final(saga_id).state == "completed"


def test_a_pause_of_a_compensations_capability_holds_the_undo(harness: Harness) -> None:
    tag = _tag()
    behaviour = {"two": {"sleep_ms": STEP_MS, "fail_always": True, "retryable": False}}
    saga_id = harness.submit("it.three", {"tag": tag, "behaviour": behaviour})
    eventually(lambda: harness.calls(tag).get("two") == 1, timeout=30, what="step two to start")
    _pause(harness, PauseKind.capability, "alpha")
    try:
        saga = _held(harness, saga_id, f"capability:{TENANT}:alpha")
        assert saga.state == "compensating" and "one:compensate" not in harness.calls(tag)
    finally:
        _resume(harness, PauseKind.capability, "alpha")
    done = harness.wait_final(saga_id)
    assert done.state == "compensated" and harness.calls(tag).get("one:compensate") == 1
