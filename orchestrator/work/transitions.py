"""Moving a work item through its lifecycle: checked against the lifecycle's data, audited."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.lifecycles import (
    LIFECYCLES,
    RESOLVED_STATUSES,
    Lifecycle,
    can_close,
    can_complete,
    can_send_back,
    is_terminal,
    is_valid_transition,
    next_statuses,
)
from models.principal import Principal, Scope
from models.work_api import AllowedTransitions, WorkItemRead
from models.work_tables import DEPENDENCIES, WorkItem
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit, remediation
from orchestrator.work.access import require
from orchestrator.work.gates import passage as gates
from orchestrator.work.items import touch
from orchestrator.work.links import report_outcome
from orchestrator.work.views import load_item, read_items

# The actor of the system's own moves (SLA actions): not held at gates.
SYSTEM = "system"


def lifecycle_of(item: WorkItem) -> Lifecycle:
    return LIFECYCLES[item.lifecycle]


def allowed(session: Session, principal: Principal, item_id: str) -> AllowedTransitions:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    lc = lifecycle_of(item)
    return AllowedTransitions(
        status=item.status,
        lifecycle=lc.name,
        next=next_statuses(lc, item.status),
        terminal=is_terminal(lc, item.status),
        can_complete=can_complete(lc, item.status),
        can_close=can_close(lc, item.status),
        can_send_back=can_send_back(lc, item.status),
    )


def transition(
    session: Session, principal: Principal, item_id: str, to: str, *, reason: str | None, version: int | None
) -> WorkItemRead:
    require(principal, Scope.work_write)
    item = load_item(session, principal, item_id, lock=True)
    lc = lifecycle_of(item)
    if to not in lc.statuses:
        raise InvalidInput(
            f"{to!r} is not a status of the {lc.name} lifecycle",
            details=[{"path": "to", "message": f"statuses: {', '.join(lc.statuses)}"}],
        )
    if version is not None and version != item.version:
        raise Conflict(
            f"work item {item_id} is at version {item.version}, not {version}; read it again and retry",
            details=[{"path": "version", "message": f"current version is {item.version}"}],
        )
    check_transition(item, to)
    move(session, item, to, principal.ref, action="transition", reason=reason)
    return read_items(session, [item])[0]


def check_transition(item: WorkItem, to: str) -> None:
    lc = lifecycle_of(item)
    if not is_valid_transition(lc, item.status, to):
        options = next_statuses(lc, item.status)
        allowed_text = ", ".join(options) if options else "none (the status is terminal)"
        raise Conflict(
            f"cannot move {item.id} from {item.status} to {to}; allowed next: {allowed_text}",
            details=[
                {
                    "path": "status",
                    "message": f"allowed next: {allowed_text}",
                    "from": item.status,
                    "to": to,
                    "allowed": options,
                }
            ],
        )


def move(
    session: Session,
    item: WorkItem,
    to: str,
    actor: str,
    *,
    action: str,
    reason: str | None = None,
    details: dict[str, object] | None = None,
) -> None:
    """Set the status, keep the timestamps and the claim consistent with it, and audit it."""
    lc = lifecycle_of(item)
    if to in lc.start.values() and item.status in lc.start:
        blockers = unresolved_dependencies(session, item.id)
        if blockers:
            raise Conflict(
                f"{item.id} cannot start: it waits on {', '.join(blockers)}",
                details=[{"path": "dependencies", "message": "not resolved yet", "blocked_by": blockers}],
            )
    passed = enforce_gate(session, item, to, actor)
    before = item.status
    now = utcnow()
    item.status = to
    item.is_open = not is_terminal(lc, to)
    first_start = to in lc.start.values() and item.started_at is None
    if first_start:
        item.started_at = now
    if not item.is_open:
        item.completed_at = now
        release_claim(item)
        # The work is over: its SLA clock stops.
        uow_of(session).drop_item_timers(item.id)
    touch(item)
    audit.record(session, item, action, actor, from_status=before, to_status=to, reason=reason, details=details)
    if passed is not None:
        gates.passed(session, item, passed[0], passed[1], before, to, actor)
    report_outcome(session, item, actor)
    if first_start and item.is_open and item.timeout_ms is not None:
        from orchestrator.work import timeouts  # imported here: it fails items with this module's move

        timeouts.arm_at_start(session, item, now)
    if remediation.opens_remediation(item, to):
        remediation.on_failed(session, item, actor, now)


def enforce_gate(session: Session, item: WorkItem, to: str, actor: str) -> tuple[gates.Gate, list[str]] | None:
    """Refuse a gated transition that lacks something (409 listing each); the item's gate and the
    approvals it passes on if it was gated, None if nothing gates it. The system's own moves (an SLA's cancel or
    pause) are not held: gates stand between people and agents and the work."""
    if actor == SYSTEM:
        return None
    gate = gates.gate_of(session, item)
    if gate is None or not gate.gated(item.status, to):
        return None
    lacks = gates.missing(session, gate, mover=actor)
    if lacks:
        raise gates.refuse(item, to, lacks)
    return gate, gates.approved(session, item)


def release_claim(item: WorkItem) -> None:
    item.claimed_by_type = item.claimed_by_id = None
    item.claimed_at = None
    item.lease_expires_at = None


def unresolved_dependencies(session: Session, item_id: str) -> list[str]:
    """Dependencies not yet resolved; a deleted or missing one counts as unresolved."""
    resolved = (
        select(func.count())
        .select_from(WorkItem)
        .where(
            WorkItem.id == DEPENDENCIES.c.depends_on_id,
            WorkItem.deleted_at.is_(None),
            WorkItem.status.in_(RESOLVED_STATUSES),
        )
        .scalar_subquery()
    )
    query = select(DEPENDENCIES.c.depends_on_id).where(DEPENDENCIES.c.item_id == item_id, resolved == 0)
    return sorted(session.scalars(query))
