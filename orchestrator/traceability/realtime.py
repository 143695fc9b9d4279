"""The real-time traceability check (spec §13.1, "Real-time: on work item creation, transition,
and completion"): the chain of the one item an audit row is about, checked as the row is written.

``work/audit.py`` calls :func:`check` for every audit row it writes; it looks at what that row
touches, not at the tenant:

- its goal link: on a creation or a change of status, every code the item names in
  ``relatedGoals`` must be an active goal of its tenant, if the tenant keeps a goal registry (one
  primary-key read, only for items that name goals; a second only when one is not active);
- the action just recorded: an agent's claim, start, completion, failure or evidence has its
  action, and the agent's audited work on the item as many actions as the audit trail says (one
  statement over the item's own rows, by its indexes);
- its artifacts: a completion's or evidence's action has its artifact;
- its approvals: a gate passage that needed an approval (a human in the loop, or a policy version
  with approval steps) names one.

What it finds is handed back as :class:`Finding`s (a broken link, spelled as the validation's
check names it); the caller records each once (``breaks``) and notifies. Rows this transaction
buffered and has not written yet are counted with the database's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models.gate_tables import PolicyRow
from models.trace_tables import GOALS
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.traceability.actions import ARTIFACT_OF, TRACED, agent_of


@dataclass(frozen=True)
class Finding:
    """A broken link: which check it fails (the validation's name), what is broken (as that check
    lists it), the item it concerns, and what is wrong, in a sentence."""

    check: str
    subject: str
    item_id: str | None
    detail: str


def check(
    session: Session,
    *,
    item_id: str,
    tenant: str,
    related_goals: Sequence[str] | None,
    action: str,
    actor: str,
    to_status: str | None,
    details: Mapping[str, Any] | None,
    action_id: str | None,
) -> list[Finding]:
    """The broken links of item ``item_id``'s chain that this audit row (``action`` by ``actor``)
    shows; ``action_id``: the agent action recorded with it (None if none was)."""
    found: list[Finding] = []
    # No autoflush: these reads must not write the item's pending changes one statement early
    # (the unit of work writes them with the audit rows).
    with session.no_autoflush:
        if (action == "created" or to_status is not None) and related_goals:
            found += _goals(session, item_id, tenant, related_goals)
        agent = agent_of(actor)
        if agent is not None and action in TRACED:
            found += _actions(session, item_id, agent, action, action_id)
        if action == "gate_passed":
            found += _approval(session, item_id, tenant, details or {})
    return found


def _goals(session: Session, item_id: str, tenant: str, codes: Sequence[str]) -> list[Finding]:
    wanted = sorted({c for c in codes if isinstance(c, str)})
    if not wanted:
        return []
    active = set(
        session.scalars(
            select(GOALS.c.code).where(GOALS.c.tenant == tenant, GOALS.c.code.in_(wanted), GOALS.c.status == "active")
        )
    )
    if active.issuperset(wanted):
        return []
    # A tenant that keeps no goal registry names goals as labels: nothing there to link to.
    if session.scalar(select(GOALS.c.code).where(GOALS.c.tenant == tenant).limit(1)) is None:
        return []
    return [
        Finding("goalToWorkItemLinkage", code, item_id, f"{item_id} names {code}, which is not an active goal")
        for code in wanted
        if code not in active
    ]


# The agent's audited work on the item that needs an action (since recording began), less the
# actions it has: what the database holds. The buffered rows of this transaction are added in Python.
_ACTION_GAP = text(
    "SELECT (SELECT count(*) FROM work_item_events e WHERE e.item_id = :item AND e.actor = :actor "
    "AND e.action IN ('claimed', 'started', 'completed', 'failed', 'evidence') "
    "AND e.at >= coalesce((SELECT t.started_at FROM trace_epoch t WHERE t.id = 1), e.at)) "
    "- (SELECT count(*) FROM agent_actions a WHERE a.item_id = :item AND a.agent_id = :agent)"
)


def _actions(session: Session, item_id: str, agent: str, action: str, action_id: str | None) -> list[Finding]:
    found: list[Finding] = []
    uow = uow_of(session)
    actor = f"agent:{agent}"
    audited = sum(1 for r in uow.audit if r["item_id"] == item_id and r["actor"] == actor and r["action"] in TRACED)
    recorded = sum(1 for r in uow.actions if r["item_id"] == item_id and r["agent_id"] == agent)
    gap = int(session.scalar(_ACTION_GAP, {"item": item_id, "actor": actor, "agent": agent}) or 0)
    if action_id is None or gap + audited - recorded > 0:
        found.append(
            Finding(
                "workItemToActionLinkage",
                item_id,
                item_id,
                f"{actor}'s work on {item_id} has fewer actions than its audit trail records",
            )
        )
    if action_id is not None and action in ARTIFACT_OF:
        if not any(r["action_id"] == action_id for r in uow.artifacts):
            found.append(
                Finding("actionToArtifactLinkage", action_id, item_id, f"{action_id} ({action}) has no artifact")
            )
    return found


def _approval(session: Session, item_id: str, tenant: str, details: Mapping[str, Any]) -> list[Finding]:
    approvals = details.get("approvals")
    if isinstance(approvals, list) and approvals:
        return []
    needed = details.get("hitl") is True
    policy, version = details.get("policy"), details.get("policy_version")
    if not needed and isinstance(policy, str) and isinstance(version, int):
        owner = details.get("policy_tenant")
        body = session.scalar(
            select(PolicyRow.body).where(
                PolicyRow.tenant == (owner if isinstance(owner, str) else tenant),
                PolicyRow.id == policy,
                PolicyRow.version == version,
            )
        )
        steps = body.get("approvalSteps") if isinstance(body, dict) else None
        needed = isinstance(steps, list) and bool(steps)
    if not needed:
        return []
    return [
        Finding(
            "approvalTraceability",
            item_id,
            item_id,
            f"{item_id} passed the gate of {details.get('transition', '?')} needing an approval and names none",
        )
    ]
