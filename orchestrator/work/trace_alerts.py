"""A broken traceability link, once recorded (spec §13.1, "Broken Chain Resolution"): noted in the
item's audit trail (``trace_broken``), notified to the tenant's webhooks (``traceability.broken``)
and a remediation item opened for a person to restore the link or mark it invalid. All in the
transaction that found it, and only for a break not recorded before: the nightly validation
finding the same break again opens nothing new."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from models.work_tables import WorkItem
from orchestrator.traceability import breaks
from orchestrator.traceability.realtime import Finding
from orchestrator.work import audit, remediation, webhooks

ACTOR = "system:traceability"
EVENT = "traceability.broken"


def raise_breaks(session: Session, tenant: str, findings: Iterable[Finding], found_by: str, now: datetime) -> int:
    """Record each finding; for each one new, audit it, notify and open its remediation. How many were new."""
    new = 0
    for finding in findings:
        break_id = breaks.record(session, finding, tenant, found_by, now)
        if break_id is None:
            continue
        new += 1
        item = session.get(WorkItem, finding.item_id) if finding.item_id is not None else None
        opened: str | None = None
        if item is not None and item.type != remediation.KIND:
            audit.record(
                session,
                item,
                "trace_broken",
                ACTOR,
                reason=finding.detail,
                details={"check": finding.check, "subject": finding.subject, "found_by": found_by},
            )
            opened = remediation.open_remediation(
                session,
                item,
                ACTOR,
                now,
                why=f"has a broken traceability link ({finding.check}: {finding.detail})",
                key=f"trace:{finding.check}:{finding.subject}",
                plan=f"restore the link ({finding.detail}) or mark it invalid",
            )
            breaks.set_remediation(session, break_id, opened)
        webhooks.emit(
            session,
            tenant,
            EVENT,
            {
                "check": finding.check,
                "subject": finding.subject,
                "work_item_id": finding.item_id,
                "detail": finding.detail,
                "found_by": found_by,
                "remediation_id": opened,
            },
            now,
        )
    return new
