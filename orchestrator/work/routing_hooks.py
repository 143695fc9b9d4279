"""Where the work room hands items to routing (``orchestrator.routing``): on creation, and on the
re-routing triggers it sees (a holder's failure, a lapsed lease, an SLA breach).

Routing changes items with the work room's own helpers (claims, transitions, audit), so it
imports them; the work room reaches routing only through these calls, imported when called, so
that neither package needs the other loaded first.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.principal import Principal
from models.sla import BreachAction
from models.work_tables import WorkItem


def item_created(session: Session, item: WorkItem, actor: str) -> None:
    """The item was just written (flushed, with its labels): route it."""
    from orchestrator.routing import triggers

    triggers.on_created(session, item, actor)


def holder_failed(session: Session, item: WorkItem, principal: Principal, reason: str, cost: float | None) -> bool:
    """The holder is failing the item: True when routing gave it to another agent instead (it
    stays open, the holder's claim is gone, its failure and cost are recorded); False: fail it
    as usual."""
    from orchestrator.routing import triggers

    return triggers.on_failure(session, item, principal, reason, cost)


def lease_expired(session: Session, item: WorkItem) -> None:
    """The item's lease lapsed and it went back to its queue (the history names the holder)."""
    from orchestrator.routing import triggers

    triggers.on_lease_expired(session, item)


def sla_breached(session: Session, item: WorkItem, action: BreachAction) -> None:
    """The item's SLA breached (its breach action has run)."""
    from orchestrator.routing import triggers

    triggers.on_sla_breach(session, item, action)
