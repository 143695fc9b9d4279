"""SLA clocks on work items, kept as durable timers: the early warning, the breach and each
escalation step is one row in ``timers``, written with the item and deleted when it ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from models.enums import TimerKind
from models.sla import SlaSpec
from models.tables import TIMERS
from models.work_tables import WorkItem


def schedule(session: Session, item: WorkItem, sla: SlaSpec, now: datetime) -> None:
    """Write the item's SLA timers; its clock starts at creation."""
    start = item.created_at or now
    rows: list[dict[str, Any]] = []

    def timer(kind: TimerKind, key: str, after_ms: float, payload: dict[str, Any]) -> None:
        rows.append(
            {
                "key": f"{kind.value}:{item.id}:{key}",
                "kind": kind,
                "item_id": item.id,
                "payload": payload,
                "due_at": start + timedelta(milliseconds=after_ms),
                "created_at": now,
            }
        )

    if sla.warn_at_pct is not None:
        timer(TimerKind.sla_warn, "warn", sla.target_ms * sla.warn_at_pct / 100, {})
    timer(TimerKind.sla_breach, "breach", sla.target_ms, {})
    for n, step in enumerate(sla.escalation):
        timer(TimerKind.sla_escalate, str(n), step.after_ms, {"step": n})
    session.execute(insert(TIMERS), rows)


def cancel(session: Session, item_id: str) -> None:
    """The item ended: its SLA clock stops."""
    session.execute(delete(TIMERS).where(TIMERS.c.item_id == item_id))
