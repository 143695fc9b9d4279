"""SLA clocks on work items, kept as durable timers: the early warning, the breach and each
escalation step is one row in ``timers``, written with the item and deleted when it ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from models.enums import TimerKind
from models.sla import SlaSpec
from models.work_tables import WorkItem
from orchestrator.storage.unit_of_work import uow_of


def schedule(session: Session, item: WorkItem, sla: SlaSpec, now: datetime) -> None:
    """Write the item's SLA timers; its clock starts at creation."""
    start = item.created_at or now
    uow = uow_of(session)

    def timer(kind: TimerKind, key: str, after_ms: float, payload: dict[str, Any]) -> None:
        due = start + timedelta(milliseconds=after_ms)
        uow.arm_timer(f"{kind.value}:{item.id}:{key}", kind, due, now, item_id=item.id, payload=payload)

    if sla.warn_at_pct is not None:
        timer(TimerKind.sla_warn, "warn", sla.target_ms * sla.warn_at_pct / 100, {})
    timer(TimerKind.sla_breach, "breach", sla.target_ms, {})
    for n, step in enumerate(sla.escalation):
        timer(TimerKind.sla_escalate, str(n), step.after_ms, {"step": n})


def cancel(session: Session, item_id: str) -> None:
    """The item ended: its SLA clock stops."""
    uow_of(session).drop_item_timers(item_id)
