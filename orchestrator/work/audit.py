"""The audit trail: one row per change to a work item, in the transaction that made it.

Rows are buffered in the transaction's unit of work and written in one multi-row statement as
it commits: the timer loop audits thousands of items a second, and a statement (and an
autoflush of the item before it) per row was most of its cost. A read of the trail writes the
buffer first, so a transaction always sees its own rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.traceability import actions, realtime


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
    at = utcnow()
    uow_of(session).audit.append(
        {
            "item_id": item.id,
            "tenant": item.tenant,
            "action": action,
            "actor": actor,
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "details": details or {},
            "at": at,
        }
    )
    # An agent's action (spec §13), in the same transaction and at the same time. (The one audit
    # row not written here, a claim on PostgreSQL, has its action recorded by ``claims`` after it.)
    act = actions.record(session, item.id, item.tenant, action, actor, details, at)
    # The real-time check of the item's chain (spec §13.1): what this row touches, read as it is written.
    found = realtime.check(
        session,
        item_id=item.id,
        tenant=item.tenant,
        related_goals=item.related_goals,
        action=action,
        actor=actor,
        to_status=to_status,
        details=details,
        action_id=act,
    )
    if found:
        # Imported here: raising a break opens a remediation item, whose creation is audited here.
        from orchestrator.work import trace_alerts

        trace_alerts.raise_breaks(session, item.tenant, found, "realtime", at)


def history(session: Session, item_id: str) -> list[WorkItemEvent]:
    uow = uow_of(session)
    if uow.pending:
        uow.write(session)
    return list(
        session.scalars(select(WorkItemEvent).where(WorkItemEvent.item_id == item_id).order_by(WorkItemEvent.id))
    )
