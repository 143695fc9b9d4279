"""The durable timer loop: fires due timers (retries, deadlines, SLA warnings, breaches,
escalation steps and agents' lease expiries) exactly once, and times out attempts past their
deadline.

Any number of orchestrator processes may run it: a timer is deleted in the transaction that
fires it, taken with SKIP LOCKED under the saga's (or work item's) row lock, so a second process
finds it gone. An attempt's deadline lives on its row; it fires under the saga's row lock only if
the attempt is still running, so a second process (or a report that came first) finds it settled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from config.logging import log_context
from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, TimerKind
from models.tables import StepAttempt, Timer
from models.work_tables import WorkItem
from orchestrator.sagas.engine import SAGA_TIMERS, SagaEngine
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.service.dispatcher import Dispatcher
from orchestrator.storage.db import SessionFactory, lock_sagas, reading
from orchestrator.storage.pipeline import select_in_turn
from orchestrator.storage.unit_of_work import on_armed
from orchestrator.traceability import nightly
from orchestrator.work import stalls, timeouts
from orchestrator.work.claims import fire_lease_timer
from orchestrator.work.gates import validations
from orchestrator.work.sla import actions as sla

log = logging.getLogger(__name__)

# An idle tick's one statement, built once (building it cost as much as running it): when the
# earliest timer and the earliest running attempt's deadline come due.
_NEXT_DUE = select(
    select(func.min(Timer.due_at)).scalar_subquery(),
    select(func.min(StepAttempt.deadline_at))
    .where(StepAttempt.outcome == Outcome.running, StepAttempt.deadline_at.is_not(None))
    .scalar_subquery(),
)

TIMER_BATCH = 200
RETRY_FAILED_S = 60
# After a tick that failed: how long the loop waits before trying again.
FAILED_TICK_PAUSE_S = 1.0

ItemTimer = Callable[[Session, Timer, WorkItem | None, datetime], None]

# The work items' timer kinds and what fires them, under the item's row lock. The sagas' are
# in SAGA_TIMERS; between them every TimerKind has exactly one handler.
ITEM_TIMERS: dict[TimerKind, ItemTimer] = {
    TimerKind.sla_warn: sla.warn,
    TimerKind.sla_breach: sla.breach,
    TimerKind.sla_escalate: sla.escalate,
    TimerKind.lease_expiry: fire_lease_timer,
    TimerKind.stall_check: stalls.fire,
    TimerKind.item_timeout: timeouts.fire,
    TimerKind.item_overall_timeout: timeouts.fire,
    TimerKind.item_due: timeouts.fire,
    TimerKind.validation_give_up: validations.give_up,
    TimerKind.trace_validation: nightly.fire,  # a tenant's, not an item's: no item to lock
}
# How often a timer loop arms the nightly validation of tenants that have none yet (new tenants).
NIGHTLY_ARM_EVERY_S = 3600.0
# After arming them failed: how long before the loop tries again (it keeps ticking meanwhile).
NIGHTLY_ARM_RETRY_S = 60.0


class ValidationWorker:
    """The one thread that runs a timer service's nightly validations, one after another, off the
    timer loop: a tenant's run takes seconds at a million items, and lease expiries, SLA and saga
    timers must not wait for every tenant due at that hour.

    Started by the first run handed to it; a daemon, so a process stopping never waits for a run
    (the run's timer, held for ``nightly.TAKEN_FOR``, comes due again). Runs still queued when it
    stops are dropped the same way; a run handed over after that starts a thread anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[Callable[[], None] | None] | None = None

    def submit(self, run: Callable[[], None]) -> None:
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue()
                threading.Thread(target=self._work, args=(self._queue,), name="trace-validations", daemon=True).start()
            self._queue.put(run)

    def idle(self, timeout: float) -> bool:
        """Wait until every run handed over so far has ended (at most ``timeout`` s); whether they have."""
        deadline = time.monotonic() + timeout
        while (q := self._queue) is not None and q.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Drop the runs not started and end the thread after the one running (never waits for it)."""
        with self._lock:
            q, self._queue = self._queue, None
        if q is None:
            return
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
            q.task_done()
        q.put(None)

    @staticmethod
    def _work(q: queue.Queue[Callable[[], None] | None]) -> None:
        while True:
            run = q.get()
            try:
                if run is None:
                    return
                run()
            except Exception:
                log.exception("a nightly traceability validation failed; its timer comes due again")
            finally:
                q.task_done()


class TimerService:
    """Fires due durable timers (retries, deadlines, SLA clocks, lease expiries) exactly once, one batch a tick."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.settings = settings
        self.dispatcher = dispatcher
        # One clock for every timer decision; tests drive it instead of sleeping.
        self.clock = clock
        # When the earliest timer or attempt deadline not yet due comes due (None: nothing is
        # armed), as the last tick saw it.
        self.next_due: datetime | None = None
        # Set to wake the loop (run) before its sleep ends: something was armed that comes due
        # sooner, or the process stops.
        self.wake = threading.Event()
        # Until when the loop sleeps; None while it is awake (it then ticks again anyway).
        self._asleep_until: datetime | None = None
        # When this loop last armed the tenants' nightly validations (monotonic; None: not yet).
        self._nightly_armed: float | None = None
        # Where the nightly validations its timers start run (not in the loop's thread).
        self.validations = ValidationWorker()

    def tick(self) -> int:
        """Fire the timers due now and time out the attempts past their deadline; returns how many.

        An idle tick is one statement: when the earliest timer and the earliest running attempt's
        deadline come due (both read from their indexes). Only a source with something due is
        read further."""
        now = self.clock()
        with reading(self.sessions) as session:
            [[(timer_at, deadline_at)]] = select_in_turn(session, [(_NEXT_DUE, {})])
        fired = 0
        if timer_at is not None and timer_at <= now:
            fired += self._timers(now)
        if deadline_at is not None and deadline_at <= now:
            fired += self._deadlines(now)
        later = [at for at in (timer_at, deadline_at) if at is not None and at > now]
        self.next_due = min(later) if later else None
        return fired

    def run(self, stop: threading.Event, tick: Callable[[], int] | None = None) -> None:
        """The timer loop: tick back to back while ticks fire something; otherwise sleep until the
        next timer or deadline comes due, but no longer than ``timer_poll_s`` (timers other
        processes arm, such as the API's SLA clocks and leases, are found by that poll). A timer
        this process arms for sooner wakes the loop at once (``on_armed``). Set ``wake`` after
        ``stop`` to end it. ``tick``: what a pass runs (the timer benchmark counts through it)."""
        tick = tick or self.tick
        stop_alarm = on_armed(self._alarm)
        try:
            while True:
                self._asleep_until = None
                self.wake.clear()  # before looking at stop: a stop after the look still wakes it
                if stop.is_set():
                    return
                try:
                    # Apart from the tick: arming failing (a database hiccup, a tenant count past
                    # what one statement takes) must not stop every other timer from firing.
                    self.arm_nightly()
                except Exception:
                    log.exception("arming the nightly traceability validations failed; trying again later")
                try:
                    if tick():
                        continue
                    pause = self._pause()
                except Exception:
                    log.exception("timers failed; trying again")
                    pause = FAILED_TICK_PAUSE_S
                self._asleep_until = self.clock() + timedelta(seconds=pause)
                self.wake.wait(pause)
        finally:
            stop_alarm()
            self.validations.stop()

    def arm_nightly(self, *, force: bool = False) -> int:
        """Arm the nightly traceability validation of tenants that have none (as the loop starts,
        then hourly), and move them to the configured hour; how many were armed or moved."""
        started = time.monotonic()
        if not force and self._nightly_armed is not None and started - self._nightly_armed < NIGHTLY_ARM_EVERY_S:
            return 0
        try:
            with self.sessions.begin() as session:
                changed = nightly.ensure_armed(session, self.settings.trace_validation_hour, self.clock())
        except Exception:
            # Tried again NIGHTLY_ARM_RETRY_S later, not on every pass of the loop.
            self._nightly_armed = started - NIGHTLY_ARM_EVERY_S + NIGHTLY_ARM_RETRY_S
            raise
        self._nightly_armed = started
        return changed

    def _pause(self) -> float:
        """How long an idle loop sleeps: until the next due time, at most ``timer_poll_s``."""
        poll = self.settings.timer_poll_s
        if self.next_due is None:
            return poll
        return min(poll, max(0.0, (self.next_due - self.clock()).total_seconds()))

    def _alarm(self, due_at: datetime) -> None:
        # Awake (None), the loop may already have read the due times this commit changes: the
        # wake it set makes its next sleep end at once, and the tick after that sees them.
        asleep_until = self._asleep_until
        if asleep_until is None or due_at < asleep_until:
            self.wake.set()

    def _timers(self, now: datetime) -> int:
        with self.sessions.begin() as session:
            due = session.execute(
                select(Timer.id, Timer.saga_id).where(Timer.due_at <= now).order_by(Timer.due_at).limit(TIMER_BATCH)
            ).all()
        return self._in_batch_or_one_by_one(now, due, self._fire, Timer, Timer.due_at, "timer")

    def _in_batch_or_one_by_one(
        self,
        now: datetime,
        due: Sequence[Any],
        fire: Callable[[datetime, Sequence[Any]], int],
        model: type[Timer] | type[StepAttempt],
        due_column: Any,
        what: str,
    ) -> int:
        """Fire ``due`` (id, saga id) rows together; if that fails, one at a time, pushing a row that
        still fails ``RETRY_FAILED_S`` into the future so the rest of the schedule keeps moving."""
        if not due:
            return 0
        try:
            return fire(now, due)
        except Exception:
            log.exception("%d %s(s) together failed; one at a time", len(due), what)
        fired = 0
        for row, saga_id in due:
            try:
                fired += fire(now, [(row, saga_id)])
            except Exception:
                log.exception("%s %s (saga %s) failed; retrying it in %d s", what, row, saga_id, RETRY_FAILED_S)
                with self.sessions.begin() as session:
                    session.execute(
                        update(model)
                        .where(model.id == row)
                        .values({due_column.key: now + timedelta(seconds=RETRY_FAILED_S)})
                    )
        return fired

    def _fire(self, now: datetime, due: Sequence[tuple[int, str | None]]) -> int:
        fired = 0
        with self.sessions.begin() as session:
            # Sagas first, then timers: the same lock order as the coordinator.
            sagas = lock_sagas(session, (saga_id for _, saga_id in due if saga_id))
            timers = session.scalars(
                select(Timer)
                # Due still: a control that committed meanwhile may have moved it (a pause parks clocks).
                .where(Timer.id.in_([i for i, _ in due]), Timer.due_at <= now)
                .order_by(Timer.due_at, Timer.id)  # an escalation ladder climbs in order
                .with_for_update(skip_locked=True)
            ).all()
            # Then the work items the item timers (SLA, lease) act on: in one statement, in id order.
            sla.lock_items(session, (t.item_id for t in timers if t.item_id is not None and t.saga_id not in sagas))
            engine = SagaEngine(session.uow, SqlSagaStore(session), self.settings, now)
            for timer in timers:
                kind = TimerKind(timer.kind)
                saga = sagas.get(timer.saga_id) if timer.saga_id else None
                if kind in SAGA_TIMERS:
                    if saga is not None:
                        with log_context(saga_id=saga.id, tenant=saga.tenant):
                            engine.on_timer(saga, template_of(session, saga), timer)
                else:
                    ITEM_TIMERS[kind](session, timer, sla.locked_item(session, timer.item_id), now)
                fired += 1
            # In bulk and after firing: a saga that finished above already dropped its timers. A
            # timer its handler pushed into the future (a lease a beat extended) stays, re-armed.
            session.execute(delete(Timer).where(Timer.id.in_([t.id for t in timers if t.due_at <= now])))
            self.dispatcher.delete_published(session)
        # Dispatches, and reports of work items an SLA ended (cancel) for the sagas waiting on them.
        self.dispatcher.publish(session.uow.take_outgoing())
        # The tenants' nightly validations these timers started: after the publish, on the worker.
        for run in session.info.pop(nightly.RUNS, []):
            self.validations.submit(run)
        return fired

    # -- attempts past their deadline --------------------------------------------------------

    def _deadlines(self, now: datetime) -> int:
        with self.sessions.begin() as session:
            due = session.execute(
                select(StepAttempt.id, StepAttempt.saga_id)
                .where(StepAttempt.outcome == Outcome.running, StepAttempt.deadline_at <= now)
                .order_by(StepAttempt.deadline_at)
                .limit(TIMER_BATCH)
            ).all()
        return self._in_batch_or_one_by_one(
            now, due, self._time_out, StepAttempt, StepAttempt.deadline_at, "attempt deadline"
        )

    def _time_out(self, now: datetime, due: Sequence[tuple[int, str]]) -> int:
        with self.sessions.begin() as session:
            sagas = lock_sagas(session, (saga_id for _, saga_id in due))
            # Read again under the sagas' locks: a report may have settled it meanwhile.
            attempts = session.scalars(
                select(StepAttempt)
                .where(
                    StepAttempt.id.in_([i for i, _ in due]),
                    StepAttempt.outcome == Outcome.running,
                    StepAttempt.deadline_at <= now,
                )
                .order_by(StepAttempt.deadline_at, StepAttempt.id)
            ).all()
            engine = SagaEngine(session.uow, SqlSagaStore(session), self.settings, now)
            for attempt in attempts:
                saga = sagas[attempt.saga_id]
                if saga.state.terminal:
                    # Nothing left to time out; keep it out of the next tick's query.
                    attempt.deadline_at = None
                    continue
                with log_context(saga_id=saga.id, tenant=saga.tenant):
                    engine.on_deadline(saga, template_of(session, saga), attempt)
            self.dispatcher.delete_published(session)
        self.dispatcher.publish(session.uow.take_outgoing())
        return len(attempts)
