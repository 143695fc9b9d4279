"""An agent's load as routing counts it, in SQL: the open items it holds a live claim on, plus the
open items routed (assigned) to it that it has not taken up yet.

One definition for the two places that count it: the pool read (``source.pool``) counts every
candidate's, and the hold (``hold``) counts the chosen agent's again under its lock. Were they to
disagree, the hold would find room the pool did not see, or refuse an agent the pool offered.
Both are scalar subqueries correlated to an ``agents`` row (``agent``), over an alias of
``work_items`` of the caller's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, ScalarSelect, func, literal_column, or_, select, true

from models.principal import ALL_TENANTS

# Constants are written into routing's statements, not bound: PostgreSQL plans a prepared statement
# once for every value of a parameter, and a guess about an unknown one cost twice the plan it
# makes knowing the value (it guessed ``registered_by <> $1`` keeps one agent in a thousand and
# probed an index once per agent).
AGENT_KIND: ColumnElement[str] = literal_column("'agent'")


def claimed(
    agent: FromClause, items: FromClause, now: ColumnElement[datetime], *, excluding: ColumnElement[Any] | None = None
) -> ScalarSelect[int]:
    """SQL: the open items the agent holds a live claim on (as the registry's ``loads``); an
    operator's agent (tenant ``*``) counts its claims in every tenant, a tenant's own those in
    its tenant. ``excluding``: an item not counted (the one being routed)."""
    where = [
        items.c.claimed_by_type == AGENT_KIND,
        items.c.claimed_by_id == agent.c.id,
        items.c.is_open == true(),
        items.c.deleted_at.is_(None),
        # A lapsed lease nobody swept yet is no claim any more: anyone may take the item.
        or_(items.c.lease_expires_at.is_(None), items.c.lease_expires_at > now),
        or_(agent.c.tenant == ALL_TENANTS, items.c.tenant == agent.c.tenant),
    ]
    if excluding is not None:
        where.append(items.c.id != excluding)
    return select(func.count()).select_from(items).where(*where).scalar_subquery()


def waiting(agent: FromClause, items: FromClause, routing: ColumnElement[Any]) -> ScalarSelect[int]:
    """SQL: the open items routed to the agent that it has not taken up yet (unclaimed, never
    started), but for ``routing``, the item being routed. An assignment is not a claim; without
    these a burst of items would all go to the one agent the strategy likes best, far past its
    capacity, before it claimed any."""
    return (
        select(func.count())
        .select_from(items)
        .where(
            items.c.assignee_type == AGENT_KIND,
            items.c.assignee_id == agent.c.id,
            items.c.is_open == true(),
            items.c.deleted_at.is_(None),
            items.c.claimed_by_id.is_(None),
            items.c.started_at.is_(None),  # not taken up yet (one in review is the reviewer's)
            items.c.id != routing,
            or_(agent.c.tenant == ALL_TENANTS, items.c.tenant == agent.c.tenant),
        )
        .scalar_subquery()
    )
