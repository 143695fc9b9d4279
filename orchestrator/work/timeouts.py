"""Item-level timeouts (the spec's §3), kept as durable timers: ``timeout_ms`` from the item's
start, ``overall_timeout_ms`` from its creation, and ``due_at``.

Each is one row in ``timers``, armed with the item (or at its start), re-armed when an update
changes it, and dropped with the item's other timers when it ends. Fired, a timer fails the item
with its reason (``timeout``, ``overall_timeout``, ``due``) through the lifecycle's fail (else
its close) and audits it; a status from which the lifecycle neither fails nor closes the item
(a canonical item still planned) is audited as ``timeout_refused`` and left as it is. The spec
says a task that exceeds ``timeoutMs`` returns ``failed`` or ``timed_out``: no lifecycle here has
``timed_out``, so the item fails and the reason says why.

A paused item's clocks keep running: the spec's overall timeout is a deadline for the item, and
its execution timeout counts execution that was started, waiting included (as an SLA's clock does,
which a pause does not stop either).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.enums import TimerKind
from models.lifecycles import LIFECYCLES
from models.tables import Timer
from models.work_tables import WorkItem
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit

SYSTEM = "system"
REASONS = {
    TimerKind.item_timeout: "timeout",
    TimerKind.item_overall_timeout: "overall_timeout",
    TimerKind.item_due: "due",
}


def _key(kind: TimerKind, item_id: str) -> str:
    return f"{kind.value}:{item_id}"


def _arm(session: Session, item: WorkItem, kind: TimerKind, now: datetime) -> None:
    """Arm ``kind``'s timer of the item, if the item has that limit (and, for the execution
    timeout, has started)."""
    due: datetime | None = None
    if kind is TimerKind.item_overall_timeout and item.overall_timeout_ms is not None:
        due = item.created_at + timedelta(milliseconds=item.overall_timeout_ms)
    elif kind is TimerKind.item_due:
        due = item.due_at
    elif kind is TimerKind.item_timeout and item.timeout_ms is not None and item.started_at is not None:
        due = item.started_at + timedelta(milliseconds=item.timeout_ms)
    if due is not None:
        uow_of(session).arm_timer(_key(kind, item.id), kind, due, now, item_id=item.id)


def arm_at_creation(session: Session, item: WorkItem, now: datetime) -> None:
    """The clocks that run from the item's creation: its overall timeout and its due date."""
    _arm(session, item, TimerKind.item_overall_timeout, now)
    _arm(session, item, TimerKind.item_due, now)


def arm_at_start(session: Session, item: WorkItem, now: datetime) -> None:
    """The clock that runs from the item's (first) start: its execution timeout."""
    _arm(session, item, TimerKind.item_timeout, now)


FIELDS = {
    "timeout_ms": TimerKind.item_timeout,
    "overall_timeout_ms": TimerKind.item_overall_timeout,
    "due_at": TimerKind.item_due,
}


def rearm(session: Session, item: WorkItem, fields: set[str], now: datetime) -> None:
    """An update changed some of the item's limits: their timers go, and come back as they now say."""
    if not item.is_open:
        return
    for field in sorted(fields & FIELDS.keys()):
        uow_of(session).cancel_timer(_key(FIELDS[field], item.id))
        _arm(session, item, FIELDS[field], now)


def fire(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """A limit passed (the caller deletes the timer in the same transaction): fail the item."""
    if item is None or not item.is_open or item.deleted_at is not None:
        return
    kind = TimerKind(timer.kind)
    reason = REASONS[kind]
    lifecycle = LIFECYCLES[item.lifecycle]
    target = lifecycle.fail.get(item.status) or lifecycle.close.get(item.status)
    limits: dict[TimerKind, dict[str, object]] = {
        TimerKind.item_timeout: {"timeout_ms": item.timeout_ms},
        TimerKind.item_overall_timeout: {"overall_timeout_ms": item.overall_timeout_ms},
        TimerKind.item_due: {"due_at": item.due_at.isoformat() if item.due_at else None},
    }
    limit = limits[kind]
    if target is None:
        audit.record(
            session,
            item,
            "timeout_refused",
            SYSTEM,
            reason=f"{reason}; {item.status} cannot be failed",
            details={"limit": reason, **limit},
        )
        return
    from orchestrator.work.transitions import move  # which arms the start clock with this module

    item.reason = reason
    move(session, item, target, SYSTEM, action="timed_out", reason=reason, details={"limit": reason, **limit})
