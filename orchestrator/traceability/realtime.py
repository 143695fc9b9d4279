"""The real-time traceability check (spec §13.1, "Real-time: on work item creation, transition,
and completion"): the chain of the one item an audit row is about, checked as the row is written.

``work/audit.py`` calls :func:`check` for every audit row it writes; it looks at what that row
touches, not at the tenant:

- its goal link: on a creation or a change of status, every code the item names in
  ``relatedGoals`` must be an active goal of its tenant, if the tenant keeps a goal registry;
- the action just recorded: an agent's claim, start, completion, failure or evidence has its
  action, and the agent's audited work on the item as many actions as the audit trail says;
- its artifacts: a completion's or evidence's action has its artifact;
- its approvals: a gate passage that needed an approval (a human in the loop, or a policy version
  with approval steps) names one.

Both are read in one statement (primary-key reads of the goals, counts over the item's own rows
by its indexes), with whether the tenant keeps a goal registry at all and which codes are broken
links on file already; a second reads which codes, only when one is not active and not on file
in a tenant with a registry. (A tenant naming goals as labels, and an item naming a retired
code whose break was recorded long ago, so cost nothing more on each change.)

What it finds is handed back as :class:`Finding`s (a broken link, spelled as the validation's
check names it); the caller records each once (``breaks``) and notifies. Rows this transaction
buffered and has not written yet are counted with the database's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, bindparam, select, text
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
    wanted = sorted({c for c in related_goals or () if isinstance(c, str)})
    if not (action == "created" or to_status is not None):
        wanted = []
    agent = agent_of(actor) if action in TRACED else None
    # No autoflush: these reads must not write the item's pending changes one statement early
    # (the unit of work writes them with the audit rows).
    with session.no_autoflush:
        # One round trip for what the database must say: how many of the codes are active goals,
        # and how far the agent's audited work and its actions on the item are apart.
        unknown, gap = _read(session, item_id, tenant, wanted, agent)
        if unknown:
            found += _goals(session, item_id, tenant, wanted)
        if agent is not None and gap is not None:
            found += _actions(session, item_id, agent, action, action_id, gap)
        if action == "gate_passed":
            found += _approval(session, item_id, tenant, details or {})
    return found


def _read(
    session: Session, item_id: str, tenant: str, wanted: list[str], agent: str | None
) -> tuple[int | None, int | None]:
    """(how many of ``wanted`` are neither an active goal nor a break on file, 0 if the tenant keeps
    no goal registry; the agent's audited work less its actions): None for what was not asked."""
    if not wanted and agent is None:
        return None, None
    params: dict[str, Any] = {"item": item_id, "tenant": tenant, "actor": f"agent:{agent}", "agent": agent}
    if wanted:
        params["codes"] = wanted
        params["check"] = GOAL_CHECK
    row = session.execute(_statement(bool(wanted), agent is not None), params).one()
    unknown: int | None = None
    if wanted:
        registry, active, on_file, both = (int(v or 0) for v in row[:4])
        # Codes either active or on file: active + on file - those both (re-activated since).
        unknown = len(wanted) - (active + on_file - both) if registry else 0
    gap = int(row[-1]) if agent is not None else None
    return unknown, gap


def _statement(goals: bool, agent: bool) -> TextClause:
    """The read for what is asked (goals, an agent's work, or both), built once each: it runs on
    every audited change, and building it anew cost about 40 µs each time."""
    key = (goals, agent)
    statement = _STATEMENTS.get(key)
    if statement is None:
        parts = [_REGISTRY, _ACTIVE, _ON_FILE, _ACTIVE_ON_FILE] if goals else []
        if agent:
            parts.append(_ACTION_GAP)
        statement = text("SELECT " + ", ".join(parts))
        if goals:
            statement = statement.bindparams(bindparam("codes", expanding=True))
        statement = _STATEMENTS[key] = statement
    return statement


_STATEMENTS: dict[tuple[bool, bool], TextClause] = {}


def _goals(session: Session, item_id: str, tenant: str, wanted: list[str]) -> list[Finding]:
    """Which of ``wanted`` are no active goal (read only when some are not, in a tenant with a registry)."""
    active = set(
        session.scalars(
            select(GOALS.c.code).where(GOALS.c.tenant == tenant, GOALS.c.code.in_(wanted), GOALS.c.status == "active")
        )
    )
    return [
        Finding(GOAL_CHECK, code, item_id, f"{item_id} names {code}, which is not an active goal")
        for code in wanted
        if code not in active
    ]


GOAL_CHECK = "goalToWorkItemLinkage"
# A tenant that keeps no goal registry names goals as labels: nothing there to link to.
_REGISTRY = "(SELECT count(*) FROM (SELECT 1 AS x FROM goals r WHERE r.tenant = :tenant LIMIT 1) AS r)"
_ON_FILE = (
    "(SELECT count(*) FROM trace_breaks b WHERE b.tenant = :tenant AND b.check_name = :check AND b.subject IN :codes)"
)
_ACTIVE_ON_FILE = (
    "(SELECT count(*) FROM goals g WHERE g.tenant = :tenant AND g.status = 'active' AND g.code IN :codes "
    "AND EXISTS (SELECT 1 FROM trace_breaks b WHERE b.tenant = :tenant AND b.check_name = :check "
    "AND b.subject = g.code))"
)
_ACTIVE = "(SELECT count(*) FROM goals g WHERE g.tenant = :tenant AND g.status = 'active' AND g.code IN :codes)"
# The agent's audited work on the item that needs an action (since recording began), less the
# actions it has: what the database holds. The buffered rows of this transaction are added in Python.
_ACTION_GAP = (
    "(SELECT count(*) FROM work_item_events e WHERE e.item_id = :item AND e.actor = :actor "
    "AND e.action IN ('claimed', 'started', 'completed', 'failed', 'evidence') "
    "AND e.at >= coalesce((SELECT t.started_at FROM trace_epoch t WHERE t.id = 1), e.at)) "
    "- (SELECT count(*) FROM agent_actions a WHERE a.item_id = :item AND a.agent_id = :agent)"
)


def _actions(session: Session, item_id: str, agent: str, action: str, action_id: str | None, gap: int) -> list[Finding]:
    """``gap``: the agent's audited work on the item less its actions, as the database has them."""
    found: list[Finding] = []
    uow = uow_of(session)
    actor = f"agent:{agent}"
    audited = sum(1 for r in uow.audit if r["item_id"] == item_id and r["actor"] == actor and r["action"] in TRACED)
    recorded = sum(1 for r in uow.actions if r["item_id"] == item_id and r["agent_id"] == agent)
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
