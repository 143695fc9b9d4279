"""Applying a routing decision to its work item: the chosen agent becomes the assignee (its
claim-next serves the item first; nobody else can claim it), a claim someone else holds is taken
back (the lease epoch moves on, so the old holder's calls are refused), the rule's human-in-the-loop
requirement and escalation path go onto the item, and the decision is recorded and audited.

The new assignee is not claimed on its behalf: it claims the item itself and gets its own lease
epoch, so a lease never runs for an agent that does not know it holds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models.routing import Fallback, Trigger
from models.sla import EscalationStep, SlaSpec
from models.work_tables import WorkItem
from orchestrator.routing import cursors, decisions
from orchestrator.routing.engine import Decision
from orchestrator.routing.inputs import LiveRule
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit
from orchestrator.work.claims import lease_timer_key
from orchestrator.work.items import touch
from orchestrator.work.sla import clock as sla_clock
from orchestrator.work.transitions import release_claim

SYSTEM = "system"


@dataclass(frozen=True)
class Applied:
    """A decision carried out: its record's id, the agent chosen, and whether the item went
    somewhere (an agent, or people by the rule's fallback) rather than being left as it was."""

    decision_id: int
    chosen: str | None
    placed: bool


def apply(
    session: Session,
    item: WorkItem,
    decision: Decision,
    *,
    trigger: Trigger,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> Applied:
    """Carry the decision out on the item, record it and audit it."""
    rule = decision.rule
    previous = ref_of(item.assignee_type, item.assignee_id)
    # Who made the change: the caller of a manual reroute, else the router itself.
    changer = actor if trigger == "manual" else SYSTEM
    reason = decision.reason + (f"; {note}" if note else "")
    details: dict[str, Any] = {"trigger": trigger, "ruleId": rule.id, "ruleVersion": rule.version}
    if rule.spec.hitl is not None and rule.spec.hitl.required:
        item.hitl = {"required": True, "gates": list(rule.spec.hitl.gates), "rule_id": rule.id}
    chosen = decision.chosen.ref if decision.chosen is not None else None
    placed = chosen is not None
    if chosen is not None:
        give(session, item, chosen, changer, reason=reason)
        if rule.spec.strategy == "round_robin":
            cursors.advance(session, rule, item.tenant, chosen, now)
    else:
        fallback = next((r.spec.fallback for r in decision.matched if r.spec.fallback is not None), None)
        if fallback is not None:
            _offer_to_people(session, item, fallback, changer, reason=reason)
            placed = True
            reason += f"; offered to people{f' in group {fallback.group}' if fallback.group else ''}"
            details["fallback"] = fallback.model_dump()
    if trigger == "created":
        # Whoever it went to, or if it went to nobody, the item follows the rule's escalation path.
        _adopt_escalation(session, item, rule, now)
    decision_id = decisions.record(
        session, item, trigger, decision, reason=reason, chosen=chosen, previous=previous, actor=actor, now=now
    )
    details.update(decision=decision_id, chosenAssignee=chosen, previousAssignee=previous)
    audit.record(session, item, "routed", changer, reason=reason, details=details)
    return Applied(decision_id, chosen, placed)


def places(decision: Decision) -> bool:
    """Whether carrying the decision out puts the item somewhere: an agent, or people by a
    matching rule's fallback."""
    return decision.chosen is not None or any(r.spec.fallback is not None for r in decision.matched)


def give(session: Session, item: WorkItem, to: str, changer: str, *, reason: str) -> None:
    """Make ``to`` the item's assignee; a claim another party holds is taken back first."""
    take_back(session, item, changer, to=to, reason=reason)
    kind, _, ident = to.partition(":")
    if (item.assignee_type, item.assignee_id) != (kind, ident):
        item.assignee_type, item.assignee_id = kind, ident
        touch(item)


def take_back(session: Session, item: WorkItem, changer: str, *, to: str | None, reason: str) -> None:
    """Release the claim of a holder other than ``to`` (audited as reassigned)."""
    holder = ref_of(item.claimed_by_type, item.claimed_by_id)
    if holder is None or holder == to:
        return
    release_claim(item)
    # A new epoch: the old holder's heartbeat, complete and fail name the old one and are refused.
    item.lease_epoch += 1
    uow_of(session).cancel_timer(lease_timer_key(item.id))
    touch(item)
    audit.record(
        session,
        item,
        "reassigned",
        changer,
        reason=reason,
        details={"from": holder, "to": to, "lease_epoch": item.lease_epoch},
    )


def _offer_to_people(session: Session, item: WorkItem, fallback: Fallback, changer: str, *, reason: str) -> None:
    """No agent fits: the item is offered to people, and an agent that had it lets go."""
    if item.claimed_by_type == "agent":
        take_back(session, item, changer, to=None, reason=reason)
    if item.assignee_type == "agent":
        item.assignee_type = item.assignee_id = None
    item.offer_type, item.offer_scope, item.offer_group = "human", fallback.scope, fallback.group
    item.offer_capability = None
    touch(item)


def _adopt_escalation(session: Session, item: WorkItem, rule: LiveRule, now: datetime) -> None:
    """The rule's escalation path becomes the SLA of an item that has none of its own."""
    escalation = rule.spec.escalation
    if escalation is None or item.sla is not None:
        return
    sla = SlaSpec(
        target_ms=escalation.on_timeout_ms,
        breach_action="notify",
        escalation=[
            EscalationStep(
                after_ms=step.after_ms,
                action=step.action,
                to=step.recipients[0] if step.action == "escalate" else (", ".join(step.recipients)[:200] or None),
            )
            for step in escalation.steps
        ],
    )
    item.sla = sla.model_dump(mode="json")
    sla_clock.schedule(session, item, sla, now)


def ref_of(kind: str | None, ident: str | None) -> str | None:
    return f"{kind}:{ident}" if kind and ident else None
