"""A broken traceability link, once recorded (spec §13.1, "Broken Chain Resolution"): noted in the
item's audit trail (``trace_broken``), notified to the tenant's webhooks (``traceability.broken``)
and a remediation item opened for a person to restore the link or mark it invalid. All in the
transaction that found it, and only for a break not recorded before: the nightly validation
finding the same break again opens nothing new.

Each break is raised in a savepoint of its own: one that cannot be raised (its remediation item
cannot be opened, say) is logged and left out, and never fails the transaction that found it (a
client's create or transition, a tenant's night). A break recorded whose remediation item could
not be opened stays recorded, with no remediation (the audit row and the webhook still go out)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from models.work_tables import WorkItem
from orchestrator.storage.unit_of_work import savepoint
from orchestrator.traceability import breaks
from orchestrator.traceability.realtime import Finding
from orchestrator.work import audit, remediation, webhooks

ACTOR = "system:traceability"
EVENT = "traceability.broken"
# The remediation item's key (its idempotence key): under the system's own prefix, apart from the
# keys clients choose (a client's own key that is the same string anyway is tolerated, see below).
KEY_PREFIX = "system:traceability:"

log = logging.getLogger(__name__)


def raise_breaks(session: Session, tenant: str, findings: Iterable[Finding], found_by: str, now: datetime) -> int:
    """Record each finding; for each one new, audit it, notify and open its remediation. How many were new."""
    new = 0
    for finding in findings:
        try:
            with savepoint(session):
                new += _raise(session, tenant, finding, found_by, now)
        except Exception:
            log.exception("could not raise the broken link %s:%s of tenant %s", finding.check, finding.subject, tenant)
    return new


def _raise(session: Session, tenant: str, finding: Finding, found_by: str, now: datetime) -> int:
    break_id = breaks.record(session, finding, tenant, found_by, now)
    if break_id is None:
        return 0
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
        try:
            with savepoint(session):
                opened = remediation.open_remediation(
                    session,
                    item,
                    ACTOR,
                    now,
                    why=f"has a broken traceability link ({finding.check}: {finding.detail})",
                    key=f"{KEY_PREFIX}{finding.check}:{finding.subject}",
                    plan=f"restore the link ({finding.detail}) or mark it invalid",
                )
        except Exception:
            # Recorded, audited and notified all the same: the break is not lost with its item.
            log.exception("could not open the remediation of %s:%s (tenant %s)", finding.check, finding.subject, tenant)
        if opened is not None:
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
    return 1
