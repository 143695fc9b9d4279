"""Broken links of traceability chains, recorded once each (spec §13.1, "Broken Chain
Resolution": detection). A break is keyed by its tenant, the check it fails and its subject (the
goal code, item, action or compensation that check lists), so the nightly validation finding the
same break every night, or the real-time check finding it on every transition, records it once:
the caller notifies and opens a remediation item only for a break recorded anew."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.trace_tables import TRACE_BREAKS, TraceBreakRow
from models.traceability import BrokenLinkRead
from orchestrator.traceability.realtime import Finding


def record(session: Session, finding: Finding, tenant: str, found_by: str, now: datetime) -> int | None:
    """Record ``finding`` unless it is recorded already; the new row's id, or None if it was."""
    key = (
        TRACE_BREAKS.c.tenant == tenant,
        TRACE_BREAKS.c.check_name == finding.check,
        TRACE_BREAKS.c.subject == finding.subject,
    )
    with session.no_autoflush:
        if session.scalar(select(TRACE_BREAKS.c.id).where(*key)) is not None:
            return None
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        # Two transactions that find the same break at once: the unique key keeps one, and the
        # other learns it was not first (nothing returned) instead of failing.
        statement = (
            dialect.insert(TRACE_BREAKS)
            .values(
                tenant=tenant,
                check_name=finding.check,
                subject=finding.subject[:450],
                item_id=finding.item_id,
                detail=finding.detail,
                found_by=found_by,
                found_at=now,
            )
            .on_conflict_do_nothing(index_elements=["tenant", "check_name", "subject"])
            .returning(TRACE_BREAKS.c.id)
        )
        inserted: int | None = session.scalar(statement)
        return inserted


def set_remediation(session: Session, break_id: int, remediation_id: str) -> None:
    session.execute(TRACE_BREAKS.update().where(TRACE_BREAKS.c.id == break_id).values(remediation_id=remediation_id))


def of_item(session: Session, item_id: str) -> Sequence[TraceBreakRow]:
    """The breaks recorded about one item, oldest first."""
    return session.scalars(
        select(TraceBreakRow).where(TraceBreakRow.item_id == item_id).order_by(TraceBreakRow.id)
    ).all()


def of_tenant(session: Session, tenant: str, limit: int) -> tuple[Sequence[TraceBreakRow], int]:
    """The tenant's most recent ``limit`` breaks, newest first, and how many it has in all."""
    rows = session.scalars(
        select(TraceBreakRow).where(TraceBreakRow.tenant == tenant).order_by(TraceBreakRow.id.desc()).limit(limit)
    ).all()
    count = (
        len(rows)
        if len(rows) < limit
        else int(
            session.scalar(select(func.count()).select_from(TRACE_BREAKS).where(TRACE_BREAKS.c.tenant == tenant)) or 0
        )
    )
    return rows, count


def view(row: TraceBreakRow) -> BrokenLinkRead:
    return BrokenLinkRead(
        check=row.check_name,
        subject=row.subject,
        work_item_id=row.item_id,
        detail=row.detail,
        found_by="nightly" if row.found_by == "nightly" else "realtime",
        found_at=row.found_at,
        remediation_id=row.remediation_id,
    )
