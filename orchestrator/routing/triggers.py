"""When the router looks at an item: on its creation, and on every re-routing trigger (its holder
fails it, its lease lapses, its SLA breaches, someone asks). Each runs in the transaction of
what triggered it, under that transaction's lock on the item.

An item created with an assignee keeps it (the creator chose); an item no rule matches is left
as it is and no decision is recorded.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import Principal, PrincipalType, Scope
from models.routing import RerouteRequest, RerouteResult, Trigger
from models.sla import BreachAction
from models.work_tables import WorkItem
from orchestrator.agents import record_spend
from orchestrator.errors import Conflict
from orchestrator.routing import assign, cursors, decisions, engine, hold, rules, source
from orchestrator.routing.checks import Needs
from orchestrator.routing.facts import item_facts, opening
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit
from orchestrator.work.access import require
from orchestrator.work.claims import lease_timer_key
from orchestrator.work.transitions import lifecycle_of, release_claim
from orchestrator.work.views import load_item, read_items


def on_created(session: Session, item: WorkItem, actor: str) -> None:
    """A new item: routed unless its creator assigned it."""
    if item.assignee_id is None and item.is_open:
        decide(session, item, "created", actor)


def on_failure(session: Session, item: WorkItem, principal: Principal, reason: str, cost: float | None) -> bool:
    """The holder fails the item: True when a matching rule gives it to another agent (or, with a
    fallback, to people) instead, so it stays open; False: it fails as it would without routing.
    The parties that failed it are not chosen for it again.

    The holder gives the item up as a release does (the same lease epoch: nobody took it from
    it), and its failure is audited as ``failed`` under that epoch with the reason's digest, as a
    fail that ends the item is: a retry of the same call answers as the first did. Its ``cost``
    counts against its budget either way.

    Only a failure of the work itself is rerouted: an item in a status nobody starts or resumes
    work from (one in review, say) is failed by a verdict on the work, and another agent given it
    there could never take it up. A paused one (blocked) is work still: its next agent takes it
    up once it is unblocked."""
    lifecycle = lifecycle_of(item)
    if item.status not in lifecycle.start.keys() | lifecycle.underway:
        return False
    actor = principal.ref
    note = f"{actor} failed it: {reason}"
    now = utcnow()
    decision = plan(session, item, "failure", exclude=decisions.failed_before(session, item.id) | {actor}, now=now)
    if decision is None:
        return False
    placed = assign.places(decision)
    if placed:
        release_claim(item)
        uow_of(session).cancel_timer(lease_timer_key(item.id))
        item.reason = reason
        details = {"lease_epoch": item.lease_epoch, "reason_sha256": reason_digest(reason), "rerouted": True}
        audit.record(
            session,
            item,
            "failed",
            actor,
            from_status=item.status,
            to_status=item.status,
            reason=reason,
            details=details,
        )
        if cost is not None and principal.type is PrincipalType.agent:
            record_spend(session, principal.tenant, principal.id, cost)
    assign.apply(session, item, decision, trigger="failure", actor=actor, now=now, note=note)
    return placed


def reason_digest(reason: str) -> str:
    """A failure reason's SHA-256, as ``claims`` keeps it to tell a retried fail from another."""
    canonical = json.dumps(reason, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def on_lease_expired(session: Session, item: WorkItem) -> None:
    """The holder's lease lapsed (and the item went back to its queue): route it again."""
    if item.is_open:
        decide(session, item, "lease_expired", "system", note="its holder's lease lapsed")


def on_sla_breach(session: Session, item: WorkItem, action: BreachAction) -> None:
    """The item's SLA breached: route it again, unless the breach itself escalated it to people
    or ended it."""
    if item.is_open and action not in ("escalate", "cancel"):
        decide(session, item, "sla_breach", "system", note="its SLA breached")


def reroute(session: Session, principal: Principal, item_id: str, body: RerouteRequest) -> RerouteResult:
    """Evaluate the item's rules again now, whatever their reroute_on says."""
    require(principal, Scope.routing_write)
    item = load_item(session, principal, item_id, lock=True)
    if not item.is_open:
        raise Conflict(f"{item_id} is {item.status}; a closed item is not routed")
    applied = decide(session, item, "manual", principal.ref, note=f"reroute: {body.reason}" if body.reason else None)
    decision = decisions.one(session, applied.decision_id) if applied is not None else None
    return RerouteResult(decision=decision, item=read_items(session, [item])[0])


def decide(
    session: Session,
    item: WorkItem,
    trigger: Trigger,
    actor: str,
    *,
    exclude: frozenset[str] = frozenset(),
    note: str | None = None,
    now: datetime | None = None,
) -> assign.Applied | None:
    """Route the item on ``trigger``: None when no rule applies, else the decision carried out."""
    now = now or utcnow()
    decision = plan(session, item, trigger, exclude=exclude, now=now)
    if decision is None:
        return None
    return assign.apply(session, item, decision, trigger=trigger, actor=actor, now=now, note=note)


def plan(
    session: Session, item: WorkItem, trigger: Trigger, *, exclude: frozenset[str], now: datetime
) -> engine.Decision | None:
    """The decision the item's rules make on ``trigger``, not carried out yet; None: no rule applies."""
    start = opening(session, item)
    live = rules.live_rules(session, item.tenant, stamp=start.rules_stamp)
    if not live:
        return None
    facts = item_facts(session, item, start.labels)
    matched = engine.matching(live, facts, trigger)
    if not matched:
        return None

    def pool_of(needs: Needs) -> engine.Pool:
        return source.pool(session, item.tenant, now=now, needs=needs, routing=item.id, stamps=start.fleet_stamps)

    def route(pools: engine.PoolOf) -> engine.Decision | None:
        return engine.route(
            matched,
            facts,
            pools,
            trigger=trigger,
            cursor_of=lambda rule: cursors.cursor_for(session, rule, item.tenant),
            exclude=exclude,
        )

    # The loads were read without a lock: the agent chosen is held, and its load counted again.
    return hold.decide(session, item, route, pool_of, now=now)
