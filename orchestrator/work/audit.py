"""The audit trail: one row per change to a work item, in the transaction that made it.

Rows are buffered on the session and written in one multi-row statement when the session
flushes or commits: the timer loop audits thousands of items a second, and a statement (and an
autoflush of the item before it) per row was most of its cost. A read of the trail writes the
buffer first, so a transaction always sees its own rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.work_tables import EVENTS, WorkItem, WorkItemEvent

PENDING_KEY = "audit_pending"


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
    session.info.setdefault(PENDING_KEY, []).append(
        {
            "item_id": item.id,
            "tenant": item.tenant,
            "action": action,
            "actor": actor,
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "details": details or {},
            "at": utcnow(),
        }
    )


def write_pending(session: Session) -> None:
    """Write the buffered rows now (after the items they name are flushed: the rows point at them)."""
    rows = session.info.pop(PENDING_KEY, None)
    if rows:
        # On the connection, not session.execute: that would autoflush, and this runs inside a flush.
        session.connection().execute(insert(EVENTS), rows)


def history(session: Session, item_id: str) -> list[WorkItemEvent]:
    session.flush()
    write_pending(session)
    return list(
        session.scalars(select(WorkItemEvent).where(WorkItemEvent.item_id == item_id).order_by(WorkItemEvent.id))
    )


@event.listens_for(Session, "after_flush_postexec")
def _after_flush(session: Session, _context: Any) -> None:
    write_pending(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # A commit with nothing dirty does not flush, so the buffer is written here too; the flush
    # first writes any item the rows point at. Sessions that audited nothing skip both.
    if session.info.get(PENDING_KEY):
        session.flush()
        write_pending(session)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    # Rows of a transaction that did not happen.
    session.info.pop(PENDING_KEY, None)
