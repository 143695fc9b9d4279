"""The gate as the transition path sees it: whether a move is gated, what it lacks, and what a
passing move records (the approvals and evidence it rested on; async validators dispatched)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.gate_tables import EvidenceRow
from models.work_tables import WorkItem
from orchestrator.work import audit
from orchestrator.work.gates.evaluate import Gate, entered_at, gate_of, missing, refuse, round_approvals
from orchestrator.work.gates.validations import run_async

__all__ = ["Gate", "gate_of", "missing", "passed", "refuse", "approved"]


def approved(session: Session, item: WorkItem) -> list[str]:
    """The approvals of the round at the item's current status (read before it moves on)."""
    return [r.id for r in round_approvals(session, item, entered_at(session, item)) if r.decision == "approve"]


def passed(
    session: Session, item: WorkItem, gate: Gate, approvals: list[str], source: str, target: str, actor: str
) -> None:
    """Audit a gated move that went through, naming what it rested on (approval traceability),
    and dispatch the async validators it does not wait for."""
    evidence = list(session.scalars(select(EvidenceRow.id).where(EvidenceRow.item_id == item.id)))
    audit.record(
        session,
        item,
        "gate_passed",
        actor,
        from_status=None,
        details={
            "transition": f"{source}->{target}",
            "policy": gate.policy_id,
            "policy_version": gate.row.version if gate.row is not None else None,
            # Whose policy: a tenant's own and an operator's shared one may have the same id.
            "policy_tenant": gate.row.tenant if gate.row is not None else None,
            "hitl": gate.hitl,
            "approvals": approvals,
            "evidence": evidence,
        },
    )
    run_async(session, gate, actor)
