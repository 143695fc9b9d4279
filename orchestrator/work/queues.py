"""Work queues: what is offered to me, what I hold, a lifecycle's queue, a group supervisor's
view. All sorted by priority (highest first), then age (oldest first)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select, true
from sqlalchemy.orm import Session

from models.base import utcnow
from models.lifecycles import LIFECYCLES
from models.principal import Principal, Scope
from models.work_api import WorkItemPage
from models.work_tables import LABELS, QUEUE_ORDER, WorkItem
from orchestrator.errors import Forbidden, NotFound
from orchestrator.storage.cursors import decode_cursor, encode_cursor
from orchestrator.work.access import require
from orchestrator.work.offers import claimable, in_tenant
from orchestrator.work.views import read_items


def available(
    session: Session,
    principal: Principal,
    *,
    lifecycle: str | None = None,
    type: str | None = None,
    label: str | None = None,
    limit: int,
    cursor: str | None,
) -> WorkItemPage:
    """Open, unclaimed items offered (or assigned) to the caller; of one lifecycle (a workflow),
    one type, and carrying one label, where given."""
    require(principal, Scope.work_read)
    query = select(WorkItem).where(claimable(principal, utcnow()))
    if lifecycle is not None:
        if lifecycle not in LIFECYCLES:
            raise NotFound(f"no lifecycle {lifecycle!r}; known: {', '.join(LIFECYCLES)}")
        query = query.where(WorkItem.lifecycle == lifecycle)
    if type is not None:
        query = query.where(WorkItem.type == type)
    if label is not None:
        query = query.where(select(literal(1)).where(LABELS.c.item_id == WorkItem.id, LABELS.c.label == label).exists())
    return _page(session, query, limit, cursor)


def claimed(session: Session, principal: Principal, *, limit: int, cursor: str | None) -> WorkItemPage:
    """Open items the caller holds a live claim on."""
    require(principal, Scope.work_read)
    now = utcnow()
    query = select(WorkItem).where(
        in_tenant(principal),
        WorkItem.claimed_by_type == principal.type.value,
        WorkItem.claimed_by_id == principal.id,
        WorkItem.is_open == true(),
        WorkItem.deleted_at.is_(None),
        or_(WorkItem.lease_expires_at.is_(None), WorkItem.lease_expires_at >= now),
    )
    return _page(session, query, limit, cursor)


def group_view(session: Session, principal: Principal, group: str, *, limit: int, cursor: str | None) -> WorkItemPage:
    """A supervisor's view of a group: every open item offered to it, claimed or not."""
    require(principal, Scope.work_supervise)
    if group not in principal.groups and not principal.has(Scope.admin.value):
        raise Forbidden(f"{principal.ref} is not in group {group!r}")
    query = select(WorkItem).where(
        in_tenant(principal),
        WorkItem.offer_type == "human",
        WorkItem.offer_group == group,
        WorkItem.is_open == true(),
        WorkItem.deleted_at.is_(None),
    )
    return _page(session, query, limit, cursor)


def _page(session: Session, query: Select[Any], limit: int, cursor: str | None) -> WorkItemPage:
    if cursor:
        priority, created, last_id = decode_cursor(cursor, int, datetime, str)
        query = query.where(_after(priority, created, last_id))
    rows = session.scalars(query.order_by(*QUEUE_ORDER).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last.priority, last.created_at, last.id)
    return WorkItemPage(items=read_items(session, page), next_cursor=next_cursor)


def _after(priority: int, created: datetime, last_id: str) -> ColumnElement[bool]:
    return or_(
        WorkItem.priority < priority,
        and_(WorkItem.priority == priority, WorkItem.created_at > created),
        and_(WorkItem.priority == priority, WorkItem.created_at == created, WorkItem.id > last_id),
    )
