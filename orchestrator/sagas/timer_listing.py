"""The operators' listing of what is due later: durable timers (retries, saga deadlines and SLA
clocks, work-item SLA clocks and leases) and the deadlines of running attempts."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import Outcome
from models.tables import StepAttempt, Timer
from models.timer_api import DeadlineRead, TimerListing, TimerRead


def list_timers(
    session: Session,
    *,
    limit: int,
    due_only: bool = False,
    kind: str | None = None,
    saga_id: str | None = None,
    item_id: str | None = None,
) -> TimerListing:
    """Timers soonest first (``kind``, ``saga_id``, ``item_id``: only those), then running
    attempts' deadlines (only with no ``kind`` and no ``item_id``, or ``kind`` "deadline"),
    each with its count; ``due_only``: only what is due already."""
    now = utcnow()
    timer_filter: list[ColumnElement[bool]] = []
    if kind is not None and kind != "deadline":
        timer_filter.append(Timer.kind == kind)
    if saga_id is not None:
        timer_filter.append(Timer.saga_id == saga_id)
    if item_id is not None:
        timer_filter.append(Timer.item_id == item_id)
    running: list[ColumnElement[bool]] = [StepAttempt.outcome == Outcome.running, StepAttempt.deadline_at.is_not(None)]
    if saga_id is not None:
        running.append(StepAttempt.saga_id == saga_id)
    with_timers = kind != "deadline"
    with_deadlines = item_id is None and kind in (None, "deadline")
    due = Timer.due_at <= now
    late = StepAttempt.deadline_at <= now

    timers: list[TimerRead] = []
    total = overdue = 0
    if with_timers:
        query = select(Timer).where(*timer_filter).order_by(Timer.due_at, Timer.id).limit(limit)
        if due_only:
            query = query.where(due)
        timers = [TimerRead.model_validate(t) for t in session.scalars(query)]
        total = session.scalar(select(func.count()).select_from(Timer).where(*timer_filter)) or 0
        overdue = session.scalar(select(func.count()).select_from(Timer).where(*timer_filter, due)) or 0
    deadlines: list[DeadlineRead] = []
    watched = past = 0
    if with_deadlines:
        attempts = select(StepAttempt).where(*running).order_by(StepAttempt.deadline_at).limit(limit)
        if due_only:
            attempts = attempts.where(late)
        for a in session.scalars(attempts):
            assert a.deadline_at is not None
            deadlines.append(
                DeadlineRead(
                    saga_id=a.saga_id,
                    step_name=a.step_name,
                    phase=a.phase,
                    attempt=a.attempt,
                    deadline_at=a.deadline_at,
                )
            )
        watched = session.scalar(select(func.count()).select_from(StepAttempt).where(*running)) or 0
        past = session.scalar(select(func.count()).select_from(StepAttempt).where(*running, late)) or 0
    return TimerListing(
        now=now, total=total, due=overdue, timers=timers, watched=watched, late=past, deadlines=deadlines
    )
