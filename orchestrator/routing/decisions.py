"""The routing decisions' audit (work-items spec §4: every assignment decision logged with its
reason, ruleId, candidates and chosenAssignee), one row per decision, readable per item.

A fleet of a thousand agents would make a thousand verdicts per decision, most of them "lacks
capability x": a decision lists the first ``MAX_LISTED`` (the chosen, the other fitting ones,
then the rejected that got furthest through the checks) and counts the rest by check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.routing import RoutingDecisionRead, Trigger
from models.routing_tables import DECISIONS, RoutingDecision
from models.work_tables import WorkItem
from orchestrator.routing.engine import LISTED, CandidateOutcome, Decision

MAX_LISTED = LISTED


def record(
    session: Session,
    item: WorkItem,
    trigger: Trigger,
    decision: Decision,
    *,
    reason: str,
    chosen: str | None,
    previous: str | None,
    actor: str,
    now: datetime,
) -> int:
    """Write the decision's row now (its id goes into the item's history); its id."""
    listed, omitted = listing(decision.outcomes, decision.left_out, decision.unread)
    rule = decision.rule
    row = {
        "item_id": item.id,
        "tenant": item.tenant,
        "trigger": trigger,
        "rule_tenant": rule.tenant,
        "rule_id": rule.id,
        "rule_version": rule.version,
        "strategy": rule.spec.strategy,
        "reason": reason,
        "candidates": listed,
        "omitted": omitted,
        "chosen_assignee": chosen,
        "previous_assignee": previous,
        "actor": actor,
        "at": now,
    }
    # A Core INSERT: the decision is written once and never changed, so the ORM has nothing to track.
    return int(session.execute(insert(DECISIONS).values(row).returning(DECISIONS.c.id)).scalar_one())


def listing(
    outcomes: Sequence[CandidateOutcome], left_out: int = 0, unread: int = 0
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The verdicts a decision keeps, and how many it leaves out by check (outcomes come best
    first; ``left_out`` agents were never read, for lacking a needed capability; ``unread``
    ones, counted as ``unread``, because the strategy could rank none of them before the chosen)."""
    listed = [{"ref": o.ref, "verdict": o.verdict, "check": o.check, "why": o.why} for o in outcomes[:MAX_LISTED]]
    omitted = Counter(o.check or o.verdict for o in outcomes[MAX_LISTED:])
    if left_out:
        omitted["capabilities"] += left_out
    if unread:
        omitted["unread"] += unread
    return listed, dict(omitted)


def one(session: Session, decision_id: int) -> RoutingDecisionRead:
    row = session.get(RoutingDecision, decision_id)
    assert row is not None
    return view(row)


def for_item(session: Session, item_id: str) -> list[RoutingDecisionRead]:
    rows = session.scalars(
        select(RoutingDecision).where(RoutingDecision.item_id == item_id).order_by(RoutingDecision.id)
    )
    return [view(r) for r in rows]


def failed_before(session: Session, item_id: str) -> frozenset[str]:
    """The parties that failed the item before (a failure decision's actor): not chosen for it again."""
    rows = session.scalars(
        select(RoutingDecision.actor).where(RoutingDecision.item_id == item_id, RoutingDecision.trigger == "failure")
    )
    return frozenset(rows)


def view(row: RoutingDecision) -> RoutingDecisionRead:
    return RoutingDecisionRead(
        id=row.id,
        itemId=row.item_id,
        trigger=row.trigger,
        ruleId=row.rule_id,
        ruleVersion=row.rule_version,
        ruleTenant=row.rule_tenant,
        strategy=row.strategy,
        reason=row.reason,
        candidates=row.candidates,
        omitted=row.omitted,
        chosenAssignee=row.chosen_assignee,
        previousAssignee=row.previous_assignee,
        actor=row.actor,
        at=row.at,
    )
