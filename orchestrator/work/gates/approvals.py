"""Approvals at an item's gate: who may decide, and the record of each decision.

Four-eyes: an approver may not be anyone who did or asked for the work: the item's creator, its
assignee, its current claimant, nor anyone who claimed, started, completed or moved it; and one
person decides at most one approval step of a round (two steps need two people). An approver
needs the ``work:approve`` scope and, for a policy step, to be in the step's role (a group of its
token). A rejection blocks the gate until the item leaves the status.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.gate_tables import ApprovalRow, EvidenceRow
from models.policies import ApprovalCreate, ApprovalRead
from models.principal import Principal, PrincipalType, Scope
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.errors import Conflict, Forbidden, InvalidInput
from orchestrator.metrics import instruments
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit
from orchestrator.work.access import require
from orchestrator.work.gates.evaluate import Gate, entered_at, gate_of, missing, round_approvals
from orchestrator.work.views import load_item

# The audit actions of someone doing the work (claims.py and transitions.py write them).
WORK_ACTIONS = ("claimed", "started", "resumed", "completed", "transition")


class FourEyes(Forbidden):
    """The approver did or asked for the work, or decided another step of this round already."""

    code = "four_eyes"


def decide(session: Session, principal: Principal, item_id: str, body: ApprovalCreate) -> tuple[ApprovalRead, bool]:
    """Record a decision at the gate out of the item's current status; the same decision by the
    same person on the same step again answers the first (False)."""
    require(principal, Scope.work_approve)
    item = load_item(session, principal, item_id, lock=True)
    gate = gate_of(session, item)
    if gate is None or not any(gate.gated(item.status, to) for to in gate.lifecycle.transitions.get(item.status, ())):
        raise Conflict(
            f"{item.id} is at no gate: nothing gates the transitions out of {item.status}",
            details=[{"path": "status", "message": f"no gated transition out of {item.status}"}],
        )
    for n, evidence_id in enumerate(body.evidence):
        found = session.get(EvidenceRow, (item.tenant, evidence_id))
        if found is None or found.item_id != item.id:
            raise InvalidInput(
                f"no evidence {evidence_id!r} on {item.id}",
                details=[{"path": f"evidence.{n}", "message": "not evidence of this item"}],
            )
    since = entered_at(session, item)
    decided = round_approvals(session, item, since)
    step, role = _step(gate, principal, body, decided)
    for earlier in decided:
        if earlier.approver == principal.ref and earlier.step == step:
            if earlier.decision == body.decision:
                return read(earlier), False
            raise Conflict(
                f"{principal.ref} already decided {earlier.decision} on this step in this round",
                details=[{"path": "decision", "message": f"already {earlier.decision}"}],
            )
    _four_eyes(session, item, principal, step, decided)
    now = utcnow()
    row = ApprovalRow(
        id=f"APR-{uuid.uuid4().hex}",
        tenant=item.tenant,
        item_id=item.id,
        policy_id=gate.policy_id,
        policy_version=gate.row.version if gate.row is not None else None,
        status=item.status,
        step=step,
        role=role,
        decision=body.decision,
        approver=principal.ref,
        approver_type=principal.type.value,
        justification=body.justification,
        evidence=list(body.evidence),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        item,
        "approved" if body.decision == "approve" else "rejected",
        principal.ref,
        reason=body.justification,
        details={
            "approval": row.id,
            "policy": gate.policy_id,
            "policy_version": row.policy_version,
            "step": step,
            "role": role,
            "evidence": list(body.evidence),
        },
    )
    if body.decision == "approve" and not any(m.kind in ("approval", "human_approval") for m in missing(session, gate)):
        # The last approval the gate needed: how long it waited for people.
        instruments.approval_granted(uow_of(session), "policy" if gate.policy_id else "hitl", since, now)
    return read(row), True


def _step(
    gate: Gate, principal: Principal, body: ApprovalCreate, decided: list[ApprovalRow]
) -> tuple[int | None, str | None]:
    """The approval step the decision is for, and its role; checks the approver holds it."""
    steps = gate.spec.approval_steps if gate.spec is not None else []
    if not steps:
        if body.step is not None or body.role is not None:
            raise InvalidInput(
                "the item's gate has no approval steps: leave step and role out",
                details=[{"path": "step" if body.step is not None else "role", "message": "the gate has no steps"}],
            )
        if not gate.hitl:
            raise Conflict(f"the gate of {gate.item.id} asks for no approval")
        return None, None
    if body.step is not None:
        if body.step >= len(steps):
            raise InvalidInput(
                f"the policy has {len(steps)} approval step(s)",
                details=[{"path": "step", "message": f"0 to {len(steps) - 1}"}],
            )
        candidates = [body.step]
    elif body.role is not None:
        candidates = [n for n, s in enumerate(steps) if s.role == body.role]
        if not candidates:
            raise InvalidInput(
                f"no approval step of the policy has role {body.role!r}",
                details=[{"path": "role", "message": f"roles: {', '.join(s.role for s in steps)}"}],
            )
    else:
        candidates = [n for n, s in enumerate(steps) if s.role in principal.groups]
        if not candidates and gate.hitl and principal.type is PrincipalType.user:
            # A person in none of the roles may still give the hitl approval (the steps may all
            # have been approved by agents).
            return None, None
    done = {r.step for r in decided if r.decision == "approve"}
    open_ones = [n for n in candidates if n not in done] or candidates
    for n in open_ones:
        if steps[n].role in principal.groups:
            return n, steps[n].role
    roles = ", ".join(sorted({steps[n].role for n in candidates})) or ", ".join(s.role for s in steps)
    raise Forbidden(
        f"{principal.ref} is in none of the roles this approval needs: {roles}",
        details=[{"path": "role", "message": f"needs a token in group {roles}"}],
    )


def _four_eyes(
    session: Session, item: WorkItem, principal: Principal, step: int | None, decided: list[ApprovalRow]
) -> None:
    me = principal.ref
    doers = set(
        session.scalars(
            select(WorkItemEvent.actor).where(WorkItemEvent.item_id == item.id, WorkItemEvent.action.in_(WORK_ACTIONS))
        )
    )
    doers.add(item.created_by)
    if item.assignee_id is not None:
        doers.add(f"{item.assignee_type}:{item.assignee_id}")
    if item.claimed_by_id is not None:
        doers.add(f"{item.claimed_by_type}:{item.claimed_by_id}")
    if me in doers:
        raise FourEyes(
            f"four-eyes: {me} created, holds, or worked on {item.id} and may not approve it",
            details=[{"path": "approver", "message": "did or asked for the work", "rule": "four_eyes"}],
        )
    other = next((r for r in decided if r.approver == me and r.step != step and r.decision == "approve"), None)
    if other is not None:
        raise FourEyes(
            f"four-eyes: {me} approved step {other.step} of this gate already; each step needs another person",
            details=[{"path": "approver", "message": f"approved step {other.step} already", "rule": "four_eyes"}],
        )


def listed(session: Session, principal: Principal, item_id: str) -> list[ApprovalRead]:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    rows = session.scalars(
        select(ApprovalRow).where(ApprovalRow.item_id == item.id).order_by(ApprovalRow.created_at, ApprovalRow.id)
    ).all()
    return [read(r) for r in rows]


def read(row: ApprovalRow) -> ApprovalRead:
    return ApprovalRead(
        id=row.id,
        work_item_id=row.item_id,
        policy_id=row.policy_id,
        policy_version=row.policy_version,
        status=row.status,
        step=row.step,
        role=row.role,
        decision=row.decision,
        approver=row.approver,
        justification=row.justification,
        evidence=list(row.evidence),
        created_at=row.created_at,
    )
