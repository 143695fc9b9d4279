"""The timer loop sleeps until the next timer or deadline comes due, not in a fixed poll: an idle
stack costs a statement a poll, not two transactions five times a second. What this process arms
wakes it at once; what another process arms is found by the next poll (SQLite and PostgreSQL).
The webhook sender's idle tick is one statement too."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from models.base import utcnow
from models.tables import StepAttempt
from models.work_tables import Webhook, WebhookDelivery
from orchestrator.service.timers import TimerService
from orchestrator.service.webhooks import WebhookSender
from orchestrator.service.wiring import Wiring
from tests.conftest import BACKENDS
from tests.integration.harness import database_wiring, deadlined_saga
from tests.support import RedisTarget, eventually

TIMEOUT_MS = 500
# Far longer than the tests wait: whatever fires within it was woken, not polled.
LONG_POLL_S = 120.0


@pytest.fixture(params=BACKENDS)
def wiring(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[Wiring]:
    with database_wiring(str(request.param), tmp_path, clean_redis, watchdog_grace_s=1) as built:
        yield built


def submitted(wiring: Wiring) -> str:
    # Its retry waits ten minutes: what fires within a test is the deadline.
    return deadlined_saga(wiring, timeout_ms=TIMEOUT_MS, retry_ms=600_000)


def outcome(wiring: Wiring, saga_id: str) -> str:
    with wiring.sessions() as session:
        attempt = session.scalars(select(StepAttempt).where(StepAttempt.saga_id == saga_id)).one()
        return attempt.outcome.value


def deadline(wiring: Wiring, saga_id: str) -> datetime:
    with wiring.sessions() as session:
        attempt = session.scalars(select(StepAttempt).where(StepAttempt.saga_id == saga_id)).one()
        assert attempt.deadline_at is not None
        return attempt.deadline_at


@contextmanager
def looping(
    wiring: Wiring, pass_of: Callable[[TimerService], Callable[[], int]] | None = None
) -> Iterator[TimerService]:
    """The timer loop in a thread, as the orchestrator runs it (``pass_of``: what a pass of the
    loop runs, given the loop); on the way out it is stopped and woken, and must end."""
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher)
    stop = threading.Event()
    tick = pass_of(loop) if pass_of is not None else None
    thread = threading.Thread(target=loop.run, args=(stop, tick), daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        stop.set()
        loop.wake.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the loop did not stop when woken"


def asleep(loop: TimerService) -> bool:
    return loop._asleep_until is not None


def test_an_idle_tick_knows_when_the_next_deadline_comes_due(wiring: Wiring) -> None:
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher)
    assert loop.tick() == 0 and loop.next_due is None
    assert loop._pause() == wiring.settings.timer_poll_s  # nothing armed: the poll
    saga_id = submitted(wiring)
    assert loop.tick() == 0
    assert loop.next_due == deadline(wiring, saga_id)
    assert 0 < loop._pause() <= min(wiring.settings.timer_poll_s, TIMEOUT_MS / 1000 + 1)


def test_a_deadline_armed_in_this_process_wakes_a_loop_asleep_for_longer(wiring: Wiring) -> None:
    wiring.settings.timer_poll_s = LONG_POLL_S
    with looping(wiring) as loop:
        eventually(lambda: asleep(loop), what="the loop to fall asleep (for the long poll)")
        saga_id = submitted(wiring)  # its attempt's deadline: woken, the loop sleeps until then
        eventually(lambda: outcome(wiring, saga_id) == "timed_out", timeout=20, what="the attempt to time out")


def test_what_this_process_arms_while_the_loop_is_awake_wakes_it_too(wiring: Wiring) -> None:
    # Armed after the tick read the due times, before the loop fell asleep on what it read.
    wiring.settings.timer_poll_s = LONG_POLL_S
    armed: list[str] = []

    def arming(loop: TimerService) -> Callable[[], int]:
        def tick() -> int:
            fired = loop.tick()
            if not armed:
                armed.append(submitted(wiring))
            return fired

        return tick

    with looping(wiring, arming):
        eventually(lambda: armed, what="the first tick")
        eventually(lambda: outcome(wiring, armed[0]) == "timed_out", timeout=20, what="the attempt to time out")


def test_what_another_process_arms_is_found_by_the_next_poll(wiring: Wiring) -> None:
    with looping(wiring) as running:
        _found_by_the_poll(wiring, running)


def _found_by_the_poll(wiring: Wiring, running: TimerService) -> None:
    saga_id = submitted(wiring)
    # Pushed far out, as this process wrote it: the loop goes back to sleep for the poll.
    with wiring.engine.begin() as conn:
        conn.execute(
            update(StepAttempt).where(StepAttempt.saga_id == saga_id).values(deadline_at=utcnow() + timedelta(days=1))
        )
    eventually(lambda: running.next_due is not None and running.next_due > utcnow() + timedelta(hours=1), what="a poll")
    # Another process moves it to now, through its own connection: no alarm reaches this one.
    with wiring.engine.begin() as conn:
        conn.execute(update(StepAttempt).where(StepAttempt.saga_id == saga_id).values(deadline_at=utcnow()))
    eventually(lambda: outcome(wiring, saga_id) == "timed_out", timeout=20, what="the next poll to time it out")


def test_a_stopped_loop_ends_when_woken(wiring: Wiring) -> None:
    wiring.settings.timer_poll_s = LONG_POLL_S
    with looping(wiring) as loop:  # leaving it stops and wakes the loop, which must then end
        eventually(lambda: asleep(loop), what="the loop to fall asleep")


def statements(wiring: Wiring, run: Callable[[], object]) -> list[str]:
    """The SQL statements ``run`` sent, but SQLite's BEGIN (psycopg's is not a statement either)."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement)

    event.listen(wiring.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(wiring.engine, "before_cursor_execute", record)
    return sent


def test_an_idle_timer_tick_is_one_statement(wiring: Wiring) -> None:
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher)
    submitted(wiring)  # armed, not due
    assert len(statements(wiring, loop.tick)) == 1


def test_an_idle_tick_takes_no_write_lock(wiring: Wiring) -> None:
    # On SQLite every other transaction takes the write lock up front: the coordinator would
    # queue behind a loop's look for work.
    loop = TimerService(wiring.sessions, wiring.settings, wiring.dispatcher)
    sender = WebhookSender(wiring.sessions, wiring.settings, resolver=wiring.resolver)
    begins: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    event.listen(wiring.engine, "before_cursor_execute", record)
    try:
        loop.tick()
        sender.tick()
    finally:
        event.remove(wiring.engine, "before_cursor_execute", record)
        sender.close()
    assert "BEGIN IMMEDIATE" not in begins


def test_an_idle_webhook_tick_is_one_statement(wiring: Wiring) -> None:
    sender = WebhookSender(wiring.sessions, wiring.settings, resolver=wiring.resolver)
    try:
        assert len(statements(wiring, sender.tick)) == 1
    finally:
        sender.close()


def test_a_disabled_webhooks_waiting_delivery_leaves_the_tick_idle(wiring: Wiring) -> None:
    # Its delivery is due and waits while the webhook is disabled: every tick would otherwise
    # open the leasing transaction (on SQLite, with the write lock) for nothing.
    with wiring.sessions.begin() as session:
        hook = Webhook(
            id=uuid.uuid4().hex,
            tenant="acme",
            url="https://example.com/hook",
            secret_encrypted="",
            created_by="user:ops",
            disabled_at=utcnow(),
        )
        session.add(hook)
        session.flush()
        session.add(WebhookDelivery(webhook_id=hook.id, event="work_item.created", payload={}))
    sender = WebhookSender(wiring.sessions, wiring.settings, resolver=wiring.resolver)
    try:
        assert len(statements(wiring, sender.tick)) == 1
    finally:
        sender.close()
