"""Figures read from the database for ``/metrics``: a few aggregate statements, no rows.

Two kinds. :func:`read_counts` counts whole tables (sagas by state, work items by type and
status, dead letters, webhook deliveries): its cost grows with the tables, so the collector reads
it at most once per ``WORKYARD_METRICS_MAX_AGE_S`` and serves the figures it kept in between.
:func:`read_lags` reads two minimums off indexes (the oldest outbox row, the earliest timer): it
costs the same at any size, and is read at every scrape.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.orm import Session

from models.tables import DeadLetter, OutboxMessage, SagaRun, TemplateRow, Timer
from models.work_tables import WebhookDelivery, WorkItem
from orchestrator.metrics.instruments import MAX_LABEL_VALUES, OTHER

# Mean time to start and to complete are over the items started (completed) in this window.
RECENT = timedelta(hours=1)


@dataclass
class Sagas:
    """Saga runs of one state: how many, how many breached their SLA, and the breaches."""

    count: int = 0
    sla_breached: int = 0
    sla_breaches: int = 0


@dataclass
class Items:
    """Work items of one type (and status): counts, SLA standing, and recent start and completion times."""

    count: int = 0
    with_sla: int = 0
    sla_breached: int = 0
    sla_breaches: int = 0
    started: int = 0  # in the last RECENT
    start_seconds: float = 0.0  # their created_at -> started_at, summed
    completed: int = 0  # in the last RECENT
    complete_seconds: float = 0.0  # their created_at -> completed_at, summed

    def add(self, other: Items) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Counts:
    """What :func:`read_counts` found, and when."""

    at: datetime
    took_s: float = 0.0
    sagas: dict[str, Sagas] = field(default_factory=dict)
    # (type, status) of the items not deleted; created counts deleted ones too, by type.
    items: dict[tuple[str, str], Items] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)

    def by_type(self) -> dict[str, Items]:
        totals: dict[str, Items] = defaultdict(Items)
        for (type_, _status), items in self.items.items():
            totals[type_].add(items)
        return dict(totals)


@dataclass(frozen=True)
class Lags:
    """The oldest unpublished outbox row and the earliest timer (None: there is none)."""

    oldest_outbox: datetime | None
    earliest_timer: datetime | None


def _seconds(session: Session, later: Any, earlier: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86_400.0
    return cast(func.extract("epoch", later - earlier), Float)


def read_counts(session: Session, now: datetime) -> Counts:
    """Sagas by state, work items by type and status, dead letters, webhook deliveries by state,
    and the capabilities the templates name."""
    counts = Counts(at=now)
    for state, n, breached, breaches in session.execute(
        select(
            SagaRun.state,
            func.count(),
            func.count(SagaRun.sla_breached_at),
            func.coalesce(func.sum(SagaRun.sla_breach_count), 0),
        ).group_by(SagaRun.state)
    ):
        counts.sagas[str(state)] = Sagas(int(n), int(breached), int(breaches))

    since = now - RECENT
    start_s = _seconds(session, WorkItem.started_at, WorkItem.created_at)
    complete_s = _seconds(session, WorkItem.completed_at, WorkItem.created_at)
    recently_started = WorkItem.started_at >= since
    recently_completed = WorkItem.completed_at >= since
    rows = session.execute(
        select(
            WorkItem.type,
            WorkItem.status,
            WorkItem.deleted_at.is_(None),
            func.count(),
            func.count(WorkItem.sla),
            func.count(WorkItem.sla_breached_at),
            func.coalesce(func.sum(WorkItem.sla_breach_count), 0),
            func.count(case((recently_started, 1))),
            func.coalesce(func.sum(case((recently_started, start_s))), 0.0),
            func.count(case((recently_completed, 1))),
            func.coalesce(func.sum(case((recently_completed, complete_s))), 0.0),
        ).group_by(WorkItem.type, WorkItem.status, WorkItem.deleted_at.is_(None))
    )
    types, statuses = _Bounded(), _Bounded()
    for type_, status, live, n, with_sla, breached, breaches, started, start, completed, complete in rows:
        name = types(str(type_))
        counts.created[name] = counts.created.get(name, 0) + int(n)
        if not live:
            continue
        figures = Items(
            int(n),
            int(with_sla),
            int(breached),
            int(breaches),
            int(started),
            float(start),
            int(completed),
            float(complete),
        )
        counts.items.setdefault((name, statuses(str(status))), Items()).add(figures)

    counts.dead_letters = int(session.scalar(select(func.count()).select_from(DeadLetter)) or 0)
    for delivery_state, n in session.execute(
        select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
    ):
        counts.deliveries[str(delivery_state)] = int(n)
    counts.capabilities = template_capabilities(session)
    return counts


def read_lags(session: Session) -> Lags:
    """The oldest outbox row and the earliest timer, off their indexes."""
    oldest, earliest = session.execute(
        select(
            select(func.min(OutboxMessage.created_at)).scalar_subquery(),
            select(func.min(Timer.due_at)).scalar_subquery(),
        )
    ).one()
    return Lags(_aware(oldest), _aware(earliest))


def _aware(value: Any) -> datetime | None:
    """A timestamp as UTC; a scalar subquery's type is not its column's, so on SQLite it comes
    back as the stored text (naive UTC)."""
    if value is None:
        return None
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def template_capabilities(session: Session) -> list[str]:
    """Every capability a registered template's steps name (bounded, sorted). Read off the
    stored specs as they are: a template is validated once, when it is registered."""
    found: set[str] = set()
    for spec in session.scalars(select(TemplateRow.spec)):
        for step in spec.get("steps") or []:
            capability = step.get("capability") if isinstance(step, dict) else None
            if isinstance(capability, str) and capability:
                found.add(capability)
    return sorted(found)[:MAX_LABEL_VALUES]


class _Bounded:
    """At most MAX_LABEL_VALUES distinct values of a label in one reading; the rest are OTHER."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen or len(self.seen) < MAX_LABEL_VALUES:
            self.seen.add(value)
            return value
        return OTHER
