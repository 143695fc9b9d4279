"""The spec's ``failed -> remediation``: a canonical item that fails opens a remediation item,
routed as any new item is (the routing rules' ``on_created``), linked back to it.

Opened once per failure (keyed by the item and its version), in the transaction that failed the
item. A remediation item that fails opens none: that would chain remediations without end; its
failure is in its history, where whoever routed it looks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models.work_tables import WorkItem
from orchestrator.work import audit, routing_hooks
from orchestrator.work.sla.follow_ups import open_follow_up

# The lifecycles whose "failed" opens a remediation (the spec's); a saga's step items fail into
# their saga, which compensates instead.
REMEDIATED_LIFECYCLES = frozenset({"canonical"})
KIND = "remediation"


def opens_remediation(item: WorkItem, to: str) -> bool:
    return to == "failed" and item.lifecycle in REMEDIATED_LIFECYCLES and item.type != KIND


def open_remediation(
    session: Session, item: WorkItem, actor: str, now: datetime, *, why: str, key: str, plan: str
) -> str:
    """Open (once per ``key``) a remediation item about ``item``, route it, and note it on ``item``; its id."""
    opened = open_follow_up(
        session,
        now,
        tenant=item.tenant,
        kind=KIND,
        key=key,
        title=f"Remediate: {item.title}",
        description=f"Opened because {item.id} {why}.",
        payload={"incidentRef": item.id, "startAt": now.isoformat(), "remediationPlan": plan},
        scope="work:claim",
        created_by=actor,
        priority=max(item.priority, 80),
        meta={"follows": item.id},
        reporter=(item.reporter_type, item.reporter_id),
        trace_id=item.trace_id,
    )
    created = session.get(WorkItem, opened)
    if created is not None and created.version == 1 and created.assignee_id is None:
        routing_hooks.item_created(session, created, actor)
    audit.record(session, item, "remediation_opened", actor, reason=why, details={"item": opened})
    return opened


def on_failed(session: Session, item: WorkItem, actor: str, now: datetime) -> str:
    """``item`` just failed: its remediation item's id."""
    return open_remediation(
        session,
        item,
        actor,
        now,
        why=f"failed: {item.reason or '-'}",
        key=f"failed:{item.id}:{item.version}",
        plan=f"find out why {item.id} failed ({item.reason or 'no reason given'}) and put right what it left",
    )
