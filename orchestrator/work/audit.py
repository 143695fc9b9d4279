"""The audit trail: one row per change to a work item, in the transaction that made it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.work_tables import EVENTS, WorkItem, WorkItemEvent


def record(
    session: Session,
    item: WorkItem,
    action: str,
    actor: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.execute(
        insert(EVENTS).values(
            item_id=item.id,
            tenant=item.tenant,
            action=action,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            details=details or {},
            at=utcnow(),
        )
    )


def history(session: Session, item_id: str) -> list[WorkItemEvent]:
    return list(
        session.scalars(select(WorkItemEvent).where(WorkItemEvent.item_id == item_id).order_by(WorkItemEvent.id))
    )
