"""What an SLA does when its timers fire: warn, breach (with the spec's breach actions) and
climb the escalation ladder. The timers themselves are written by :mod:`sla_clock`.

A timer is deleted in the transaction that fires it, under the item's row lock, so a breach
fires once however many orchestrator processes run the timer loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.lifecycles import LIFECYCLES, is_valid_transition
from models.sla import BreachAction, SlaSpec
from models.tables import Timer
from models.work_tables import WorkItem
from orchestrator.metrics import instruments
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit, routing_hooks, webhooks
from orchestrator.work.sla.follow_ups import open_follow_up
from orchestrator.work.transitions import move, release_claim

log = logging.getLogger(__name__)

SYSTEM = "system"


def lock_items(session: Session, item_ids: Iterable[str]) -> None:
    """Row-lock the items a batch of timers acts on, in id order (so that timer loops cannot
    deadlock on them) and in one statement; :func:`fire` then finds them loaded."""
    ids = sorted(set(item_ids))
    if ids:
        items = session.scalars(select(WorkItem).where(WorkItem.id.in_(ids)).order_by(WorkItem.id).with_for_update())
        uow_of(session).hold(items)


def locked_item(session: Session, item_id: str | None) -> WorkItem | None:
    """The item a timer acts on, row-locked: from :func:`lock_items` if it took it."""
    if item_id is None:
        return None
    item: WorkItem | None = uow_of(session).locked_items.get(item_id)
    if item is None:
        item = session.scalar(select(WorkItem).where(WorkItem.id == item_id).with_for_update())
    return item


def _live_sla(item: WorkItem | None) -> SlaSpec | None:
    """The SLA of an item that is still open (the clock stops when it ends)."""
    if item is None or not item.is_open or item.deleted_at is not None or item.sla is None:
        return None
    return SlaSpec.model_validate(item.sla)


def warn(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """The early warning (the caller deletes the timer in the same transaction)."""
    if item is None or (sla := _live_sla(item)) is None:
        return
    item.sla_warned_at = now
    audit.record(session, item, "sla_warning", SYSTEM, details={"target_ms": sla.target_ms, "pct": sla.warn_at_pct})
    webhooks.emit(session, item.tenant, "sla.warning", event_of(item, f"{sla.warn_at_pct}% of the target"), now)


def breach(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """The breach, and its action."""
    if item is None or (sla := _live_sla(item)) is None:
        return
    item.sla_breached_at = item.sla_breached_at or now
    item.sla_breach_count += 1
    instruments.sla_breached(uow_of(session), "work_item")
    audit.record(
        session,
        item,
        "sla_breached",
        SYSTEM,
        details={"target_ms": sla.target_ms, "action": sla.breach_action, "count": item.sla_breach_count},
    )
    webhooks.emit(session, item.tenant, "sla.breached", event_of(item, sla.breach_action), now)
    apply(session, item, sla.breach_action, sla.breach_to, now, why="SLA breached")
    routing_hooks.sla_breached(session, item, sla.breach_action)


def escalate(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """One step of the escalation ladder."""
    if item is None or (sla := _live_sla(item)) is None:
        return
    n = int(timer.payload.get("step", 0))
    if n < len(sla.escalation):
        step = sla.escalation[n]
        audit.record(
            session,
            item,
            "escalation_step",
            SYSTEM,
            details={"step": n + 1, "of": len(sla.escalation), "action": step.action, "to": step.to},
        )
        apply(session, item, step.action, step.to, now, why=f"escalation step {n + 1}")


def apply(session: Session, item: WorkItem, action: BreachAction, to: str | None, now: datetime, *, why: str) -> None:
    """One of the spec's breach actions."""
    lifecycle = LIFECYCLES[item.lifecycle]
    if action == "notify":
        # Outgoing notifications read these audit rows; the row is the notification.
        audit.record(session, item, "notified", SYSTEM, reason=why, details={"to": to})
    elif action == "escalate":
        before = {"group": item.offer_group, "holder": holder_of(item)}
        item.offer_type, item.offer_group = "human", to
        item.offer_scope = item.offer_scope or "work:claim"
        item.offer_capability = None
        # Re-offered: whoever held it lets go, and the new group's queue shows it.
        release_claim(item)
        item.assignee_type = item.assignee_id = None
        item.version += 1
        item.updated_at = now
        audit.record(session, item, "escalated", SYSTEM, reason=why, details={"to": to, "from": before})
        escalated = {**event_of(item, action), "to": to, "why": why}
        webhooks.emit(session, item.tenant, "work_item.escalated", escalated, now)
    elif action == "cancel":
        target = lifecycle.close.get(item.status) or lifecycle.fail.get(item.status)
        if target is None:
            audit.record(session, item, "cancel_refused", SYSTEM, reason=f"{why}; {item.status} cannot be cancelled")
            return
        item.reason = why
        move(session, item, target, SYSTEM, action="cancelled", reason=why)
    elif action == "pause":
        target = lifecycle.paused  # the status that means "waiting on something"
        if target is None or not is_valid_transition(lifecycle, item.status, target):
            audit.record(session, item, "pause_refused", SYSTEM, reason=f"{why}; {item.status} cannot be paused")
            return
        move(session, item, target, SYSTEM, action="paused", reason=why)
    elif action == "open-remediation":
        opened = _follow_up(
            session,
            item,
            now,
            kind="remediation",
            title=f"Remediate late work: {item.title}",
            payload={"incidentRef": item.id, "startAt": now.isoformat(), "remediationPlan": f"{why}; find out why"},
            scope="work:claim",
        )
        audit.record(session, item, "remediation_opened", SYSTEM, reason=why, details={"item": opened})
    elif action == "queue-human-approval":
        opened = _follow_up(
            session,
            item,
            now,
            kind="task",
            title=f"Approve continuing late work: {item.title}",
            payload={"late_item": item.id},
            scope="work:supervise",
        )
        audit.record(session, item, "approval_queued", SYSTEM, reason=why, details={"item": opened})


def _follow_up(
    session: Session, item: WorkItem, now: datetime, *, kind: str, title: str, payload: dict[str, Any], scope: str
) -> str:
    return open_follow_up(
        session,
        now,
        tenant=item.tenant,
        kind=kind,
        key=f"sla:{item.id}:{kind}:{item.sla_breach_count}:{now.isoformat()}",
        title=title,
        description=f"Opened by the SLA of {item.id}.",
        payload=payload,
        scope=scope,
        created_by=SYSTEM,
        priority=max(item.priority, 80),
        meta={"follows": item.id},
        reporter=(item.reporter_type, item.reporter_id),
    )


def event_of(item: WorkItem, action: str | None) -> dict[str, Any]:
    return {
        "item": {
            "id": item.id,
            "type": item.type,
            "title": item.title,
            "status": item.status,
            "holder": holder_of(item),
            "sla": item.sla,
            "sla_breach_count": item.sla_breach_count,
            "saga_id": item.saga_id,
        },
        "action": action,
    }


def holder_of(item: WorkItem) -> str | None:
    return f"{item.claimed_by_type}:{item.claimed_by_id}" if item.claimed_by_id else None
