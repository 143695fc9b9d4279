"""One unit of work per transaction: what a transaction writes besides the rows it changes.

A transaction of workyard changes work items through the ORM, saga runs, step runs and attempts
it holds under the sagas' locks (:attr:`UnitOfWork.held`, :mod:`orchestrator.storage.held`), and
besides writes rows that nobody reads back in it: the outbox rows of the messages it causes
(invariant 1), the audit rows of the work items it changed, the timers it arms and cancels, the
attempt and fan-out member rows of the saga engine. They are gathered here, typed, and written in
bulk as the transaction commits (one statement per table, not one ORM flush per object: the
coordinator's and the timer loop's hottest path), on PostgreSQL in one pipelined round trip.

The outbox rows written are kept (:attr:`UnitOfWork.outgoing`) for the caller to publish once
the transaction has committed: nothing is published from inside an open transaction, and a crash
between commit and publish leaves the rows for the outbox sweep.

Every session workyard opens is a :class:`WorkSession`; its :attr:`~WorkSession.uow` is the unit
of work of its current transaction, written before the commit and discarded by a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, event, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from models.tables import ATTEMPTS, FAN_OUT_MEMBERS, OUTBOX, TIMERS, SagaRun, StepAttempt, StepRun
from models.trace_tables import ACTIONS, ARTIFACTS
from models.work_tables import EVENTS, WorkItem
from orchestrator.storage.bulk import delete_where_in, insert_returning_ids, insert_rows
from orchestrator.storage.held import Held
from orchestrator.storage.pipeline import pipelined

log = logging.getLogger(__name__)

# Changed rows of these tables get the same SET list, so the flush sends one executemany per
# table instead of one UPDATE per row (rows of different shapes interleave in primary-key order
# and would not group).
_UNIFORM_UPDATES: dict[type, tuple[str, ...]] = {
    SagaRun: ("state", "results", "error", "updated_at", "finished_at"),
    StepRun: ("state", "attempts", "compensation_attempts", "current_attempt", "error", "started_at", "finished_at"),
    StepAttempt: ("outcome", "worker", "error", "started_at", "finished_at"),
}


# Called after each commit that wrote a timer or an attempt with a deadline, with the earliest
# time one of them comes due: a timer loop of this process, asleep until later, wakes for it
# (orchestrator.service.timers). Timers other processes write are found by its next poll.
Alarm = Callable[[datetime], None]
_alarms: list[Alarm] = []


def on_armed(alarm: Alarm) -> Callable[[], None]:
    """Call ``alarm`` after every commit in this process that armed something; returns the
    function that stops it."""
    _alarms.append(alarm)
    return lambda: _alarms.remove(alarm) if alarm in _alarms else None


@dataclass(frozen=True)
class Outgoing:
    """An outbox row written by a committed transaction: the message to publish, and its row id
    (deleted once the broker has it)."""

    id: int
    queue: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class ArmTimer:
    """A durable timer to write (its row)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class CancelTimer:
    """The timer with this key is no longer wanted."""

    key: str


@dataclass(frozen=True)
class DropSagaTimers:
    """None of the saga's timers is wanted any more (it finished)."""

    saga_id: str


@dataclass(frozen=True)
class DropItemTimers:
    """None of the work item's timers is wanted any more (it ended: its SLA clock stops)."""

    item_id: str


@dataclass(frozen=True)
class MoveTimer:
    """The timer with this key fires at another time (a lease a heartbeat extended)."""

    key: str
    due_at: datetime


TimerChange = ArmTimer | CancelTimer | DropSagaTimers | DropItemTimers | MoveTimer


class UnitOfWork:
    """What one transaction writes besides the rows it changes; see the module."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        # Agents' actions on work items and their artifacts (``orchestrator.traceability.actions``),
        # written with the audit rows they go with.
        self.actions: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        # The saga runs, step runs and attempts the transaction holds, written as it commits.
        self.held = Held()
        self.locked_items: dict[str, WorkItem] = {}
        # (tenant, agent id) of the agents whose routing hold this transaction took
        # (``orchestrator.routing.hold``): having one, it only tries for another, never waits.
        self.agent_holds: set[tuple[str, str]] = set()
        # (rule tenant, rule id, tenant) of the round-robin cursors whose row this transaction
        # locked (``orchestrator.routing.cursors``): having one, it never waits for another.
        self.cursors_held: set[tuple[str, str, str]] = set()
        self.outgoing: list[Outgoing] = []
        self._outbox: list[dict[str, Any]] = []
        # Ids of outbox rows already published, deleted as the transaction commits.
        self._published: list[int] = []
        # In the order they were asked for: cancelling a key and arming it again is a re-arm.
        self._timers: list[TimerChange] = []
        # The earliest due time among the timers and attempt deadlines written (for on_armed).
        self.armed_at: datetime | None = None
        # What to do once the transaction has committed (count what it did, for /metrics).
        self._after_commit: list[Callable[[], None]] = []

    # -- what a transaction asks for ----------------------------------------------------------

    def send(self, queue: str, payload: dict[str, Any], now: datetime) -> None:
        """An outbox row: the message is published once the transaction has committed."""
        self._outbox.append({"queue": queue, "payload": payload, "created_at": now, "publish_count": 0})

    def forget_published(self, ids: Iterable[int]) -> None:
        """Outbox rows the broker has taken: deleted as the transaction commits (with the rest,
        in one round trip on PostgreSQL). Lost with a rollback, they stay for the outbox sweep,
        which publishes them again; workers drop the duplicates."""
        self._published.extend(ids)

    def arm_timer(
        self,
        key: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        *,
        saga_id: str | None = None,
        item_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """A durable timer, unique by ``key``."""
        row = {
            "key": key,
            "kind": kind,
            "saga_id": saga_id,
            "item_id": item_id,
            "payload": payload or {},
            "due_at": due_at,
            "created_at": now,
        }
        self._timers.append(ArmTimer(row))

    def cancel_timer(self, key: str) -> None:
        self._timers.append(CancelTimer(key))

    def drop_saga_timers(self, saga_id: str) -> None:
        """A saga finished: none of its timers is needed, including any armed before in this
        transaction."""
        self._timers.append(DropSagaTimers(saga_id))

    def drop_item_timers(self, item_id: str) -> None:
        """A work item ended: its SLA clock stops, its lease timer goes."""
        self._timers.append(DropItemTimers(item_id))

    def move_timer(self, key: str, due_at: datetime) -> None:
        self._timers.append(MoveTimer(key, due_at))

    def shift_armed(
        self, saga_id: str, kinds: Collection[str], by: timedelta, *, horizon: datetime, parked: bool
    ) -> None:
        """Move the saga's timers of ``kinds`` armed in this transaction (not yet written) by
        ``by``: those due after ``horizon`` (``parked``), or those due by then."""
        for change in self._timers:
            if isinstance(change, ArmTimer):
                row = change.row
                if row["saga_id"] == saga_id and row["kind"] in kinds and (row["due_at"] > horizon) is parked:
                    row["due_at"] = row["due_at"] + by

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed; never if it rolls back. For what
        only happened if it committed (a counter of steps settled, of SLAs breached): a batch that
        rolls back and is tried again counts once."""
        self._after_commit.append(callback)

    def mark(self) -> dict[str, Any]:
        """What this transaction has buffered so far, to go back to (:func:`savepoint`)."""
        return {name: _copy(value) for name, value in vars(self).items() if name in _RESTORED}

    def restore(self, mark: dict[str, Any]) -> None:
        """Forget what was buffered since ``mark``: the savepoint that buffered it rolled back."""
        for name, value in mark.items():
            setattr(self, name, _copy(value))

    def committed(self) -> None:
        """The transaction committed: run what waited for it (a callback that fails is logged)."""
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("an after-commit callback failed")

    def hold(self, items: Iterable[WorkItem]) -> None:
        """Work items this transaction has row-locked, kept to be found again by id (the
        session's identity map alone would let them be garbage-collected)."""
        self.locked_items.update({item.id: item for item in items})

    @property
    def outbox_rows(self) -> tuple[dict[str, Any], ...]:
        """The outbox rows asked for and not yet written (what the transaction will publish)."""
        return tuple(self._outbox)

    @property
    def timer_changes(self) -> tuple[TimerChange, ...]:
        """The timer changes asked for and not yet written, in order."""
        return tuple(self._timers)

    @property
    def pending(self) -> bool:
        return bool(
            self.held
            or self.attempts
            or self.members
            or self.audit
            or self.actions
            or self._outbox
            or self._timers
            or self._published
        )

    # -- writing -------------------------------------------------------------------------------

    def write(self, session: Session, first: Sequence[tuple[Table, list[dict[str, Any]]]] = ()) -> None:
        """Write what is buffered, in the transaction. ``first``: the caller's own new rows,
        (table, rows) to insert ahead (new sagas and their steps, which the rows below refer to).
        Called before every commit; a caller may call it earlier (to read its own audit rows)."""
        for obj in session.dirty:
            for column in _UNIFORM_UPDATES.get(type(obj), ()):
                flag_modified(obj, column)
        session.flush()  # sagas, steps and items first: the rows below refer to them
        attempts, members, audit, timers, outbox = self.attempts, self.members, self.audit, self._timers, self._outbox
        self.attempts, self.members, self.audit, self._timers, self._outbox = [], [], [], [], []
        actions, artifacts, self.actions, self.artifacts = self.actions, self.artifacts, [], []
        self._note_armed(timers, attempts)
        # None of these is read back: on PostgreSQL they go in one round trip. (The inserts are
        # "inline": no RETURNING of generated keys, which a pipeline cannot answer in time.)
        with pipelined(session):
            self.held.write(session)
            for table, rows in first:
                insert_rows(session, table, rows)
            if attempts:
                # One statement needs one shape: handler and work-item attempts set different columns.
                columns = {key for row in attempts for key in row}
                insert_rows(session, ATTEMPTS, [dict.fromkeys(columns) | row for row in attempts])
            if members:
                session.execute(insert(FAN_OUT_MEMBERS).inline(), members)
            for change in _runs(timers):
                _write_timers(session, change)
            if audit:
                session.execute(insert(EVENTS).inline(), audit)
            if actions:
                session.execute(insert(ACTIONS).inline(), actions)
            if artifacts:
                session.execute(insert(ARTIFACTS).inline(), artifacts)
            published, self._published = self._published, []
            delete_where_in(session, OUTBOX, "id", published)
        if outbox:
            ids = insert_returning_ids(session, OUTBOX, outbox)
            self.outgoing += [Outgoing(i, r["queue"], r["payload"]) for i, r in zip(ids, outbox, strict=True)]

    def _note_armed(self, timers: list[TimerChange], attempts: list[dict[str, Any]]) -> None:
        due = [c.row["due_at"] for c in timers if isinstance(c, ArmTimer)]
        due += [c.due_at for c in timers if isinstance(c, MoveTimer)]
        due += [row["deadline_at"] for row in attempts if row.get("deadline_at") is not None]
        if due:
            earliest = min(due)
            self.armed_at = earliest if self.armed_at is None else min(self.armed_at, earliest)

    def take_outgoing(self) -> list[Outgoing]:
        """The outbox rows committed so far, to publish; each is handed out once."""
        outgoing, self.outgoing = self.outgoing, []
        return outgoing

    def discard(self) -> None:
        """The transaction rolled back: nothing buffered happened."""
        self.attempts, self.members, self.audit, self._outbox, self._timers = [], [], [], [], []
        self.actions, self.artifacts = [], []
        self._published = []
        self.armed_at = None
        self._after_commit = []
        self.held.clear()
        self.locked_items.clear()
        self.agent_holds.clear()
        self.cursors_held.clear()
        self.outgoing.clear()


def _runs(changes: list[TimerChange]) -> list[list[TimerChange]]:
    """Consecutive changes of one kind, to write as one statement each, in order."""
    runs: list[list[TimerChange]] = []
    for change in changes:
        if runs and type(runs[-1][0]) is type(change):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


def _write_timers(session: Session, run: list[TimerChange]) -> None:
    head = run[0]
    if isinstance(head, ArmTimer):
        session.execute(insert(TIMERS).inline(), [c.row for c in run if isinstance(c, ArmTimer)])
    elif isinstance(head, CancelTimer):
        delete_where_in(session, TIMERS, "key", [c.key for c in run if isinstance(c, CancelTimer)])
    elif isinstance(head, DropSagaTimers):
        delete_where_in(session, TIMERS, "saga_id", [c.saga_id for c in run if isinstance(c, DropSagaTimers)])
    elif isinstance(head, DropItemTimers):
        delete_where_in(session, TIMERS, "item_id", [c.item_id for c in run if isinstance(c, DropItemTimers)])
    else:
        for change in run:
            if isinstance(change, MoveTimer):
                session.execute(update(TIMERS).where(TIMERS.c.key == change.key).values(due_at=change.due_at))


class WorkSession(Session):
    """A session that carries the unit of work of its current transaction (:attr:`uow`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uow = UnitOfWork()


@event.listens_for(WorkSession, "before_commit")
def _before_commit(session: Session) -> None:
    assert isinstance(session, WorkSession)
    if session.uow.pending:
        session.uow.write(session)


@event.listens_for(WorkSession, "after_commit")
def _after_commit(session: Session) -> None:
    assert isinstance(session, WorkSession)
    session.uow.held.clear()  # the locks ended with the transaction
    session.uow.locked_items.clear()
    session.uow.agent_holds.clear()
    session.uow.cursors_held.clear()
    session.uow.committed()
    armed_at, session.uow.armed_at = session.uow.armed_at, None
    if armed_at is not None:
        for alarm in tuple(_alarms):
            alarm(armed_at)


@event.listens_for(WorkSession, "after_rollback")
def _after_rollback(session: Session) -> None:
    assert isinstance(session, WorkSession)
    session.uow.discard()


# The buffers a savepoint's rollback takes back (the saga runs held, ``held``, are not: nothing run
# inside a savepoint takes one).
_RESTORED = frozenset(
    {
        "attempts",
        "members",
        "audit",
        "actions",
        "artifacts",
        "locked_items",
        "agent_holds",
        "cursors_held",
        "outgoing",
        "_outbox",
        "_published",
        "_timers",
        "_after_commit",
    }
)


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, list | dict | set) else value


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A savepoint whose rollback also forgets what was buffered in it (audit rows, outbox rows,
    timer changes): a failure inside leaves the transaction as it was before, to carry on."""
    uow = uow_of(session)
    mark = uow.mark()
    try:
        with session.begin_nested():
            yield
    except BaseException:
        uow.restore(mark)
        raise


def uow_of(session: Session) -> UnitOfWork:
    """The unit of work of the session's transaction (every session workyard opens has one)."""
    if not isinstance(session, WorkSession):
        raise TypeError("a workyard transaction needs a WorkSession (orchestrator.storage.db.make_session_factory)")
    return session.uow
