"""Offers in SQL: who may take an item, and the probes claim-next walks to find one.

The conditions of ``claims`` (and of the queues' views): an item offered to a principal (by
assignment, or by an offer to agents with a capability or to people with a scope and group), in
its tenant, free or held under a lapsed lease, and actionable. claim-next's probes are built once
per kind of principal with bound parameters; on PostgreSQL also as the one-statement claim takes
them (``arrays``: lists as array parameters, and the planner's hints of the lapsed-lease probe).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, aliased

from models.lifecycles import LIFECYCLES, RESOLVED_STATUSES
from models.principal import Principal, PrincipalType, Scope
from models.work_tables import DEPENDENCIES, QUEUE_ORDER, WorkItem


def offered_to(principal: Principal) -> ColumnElement[bool]:
    """SQL: the item is assigned to the principal, or unassigned and offered to it."""
    return or_(assigned_to(principal), and_(WorkItem.assignee_id.is_(None), offer_for(principal)))


def assigned_to(principal: Principal) -> ColumnElement[bool]:
    return and_(WorkItem.assignee_type == principal.type.value, WorkItem.assignee_id == principal.id)


def offer_for(principal: Principal) -> ColumnElement[bool]:
    """SQL: the item's offer reaches the principal (agents by capability, people by scope and group)."""
    if principal.type is PrincipalType.agent:
        return and_(
            WorkItem.offer_type == "agent",
            or_(WorkItem.offer_capability.is_(None), WorkItem.offer_capability.in_(sorted(principal.capabilities))),
        )
    scope_ok = true() if principal.has(Scope.admin.value) else WorkItem.offer_scope.in_(sorted(principal.scopes))
    return and_(
        WorkItem.offer_type == "human",
        scope_ok,
        or_(WorkItem.offer_group.is_(None), WorkItem.offer_group.in_(sorted(principal.groups))),
    )


def in_tenant(principal: Principal) -> ColumnElement[bool]:
    return true() if principal.all_tenants else WorkItem.tenant == principal.tenant


def unclaimed(now: datetime) -> ColumnElement[bool]:
    return or_(WorkItem.claimed_by_id.is_(None), WorkItem.lease_expires_at < now)


@lru_cache(maxsize=2)
def actionable(arrays: bool = False) -> ColumnElement[bool]:
    """SQL: a claimer can go to work on the item now: its lifecycle lets it be started (or
    resumed) from its status, and nothing it depends on is still open. What claim-next hands out:
    an item waiting for its reporter's review, or on another item, is not work for the caller.

    Built once: it names no parameter, and building it (an alias, a condition per lifecycle)
    cost more than the database took to answer a claim. ``arrays``: the status lists as one
    array parameter each (PostgreSQL's ``= ANY``), not an IN list rendered anew every execution."""
    in_status = or_(
        *(
            and_(WorkItem.lifecycle == lc.name, _one_of(WorkItem.status, sorted(lc.actionable), arrays))
            for lc in LIFECYCLES.values()
        )
    )
    dependency = aliased(WorkItem)
    resolved = select(literal(1)).where(
        dependency.id == DEPENDENCIES.c.depends_on_id,
        dependency.deleted_at.is_(None),
        _one_of(dependency.status, sorted(RESOLVED_STATUSES), arrays),
    )
    waiting = select(literal(1)).where(DEPENDENCIES.c.item_id == WorkItem.id, ~resolved.exists())
    return and_(in_status, ~waiting.exists())


_STRINGS = ARRAY(String())


def _one_of(column: InstrumentedAttribute[Any], values: list[str] | str, arrays: bool) -> ColumnElement[bool]:
    """``column IN values``; ``values`` a list, or the name of a parameter that holds one. With
    ``arrays`` as ``column = ANY(:array)``: one parameter, so the statement's text never changes
    and the database can keep it prepared."""
    if arrays:
        array = bindparam(values, type_=_STRINGS) if isinstance(values, str) else literal(values, _STRINGS)
        return column == any_(array)
    return column.in_(bindparam(values, expanding=True) if isinstance(values, str) else values)


@lru_cache(maxsize=32)
def probes(
    agent: bool, all_tenants: bool, admin: bool, by_id: bool = False, arrays: bool = False
) -> tuple[Select[WorkItem], ...]:
    """claim-next's three probes for one kind of principal, built once with bound parameters
    (tenant, kind, ident, now, capabilities, scopes, groups): building them for every claim took
    more of a claim's CPU than the database took to answer it. The conditions are those of
    ``offer_for``, ``assigned_to``, ``unclaimed`` and ``in_tenant``.

    ``by_id``: instead, the one probe of ``claim``: the item ``item_id``, if ``claimable`` (of
    any status, its dependencies open or not). ``arrays``: see ``actionable``."""
    now = bindparam("now", type_=WorkItem.__table__.c.lease_expires_at.type)
    if agent:
        offer = and_(
            WorkItem.offer_type == "agent",
            or_(WorkItem.offer_capability.is_(None), _one_of(WorkItem.offer_capability, "capabilities", arrays)),
        )
    else:
        offer = and_(
            WorkItem.offer_type == "human",
            true() if admin else _one_of(WorkItem.offer_scope, "scopes", arrays),
            or_(WorkItem.offer_group.is_(None), _one_of(WorkItem.offer_group, "groups", arrays)),
        )
    mine = and_(WorkItem.assignee_type == bindparam("kind"), WorkItem.assignee_id == bindparam("ident"))
    # Named apart from every work_items column: the claim statement's UPDATE would take a
    # parameter named like one for a value to set.
    tenant = true() if all_tenants else WorkItem.tenant == bindparam("callers_tenant")
    live = (tenant, WorkItem.is_open == true(), WorkItem.deleted_at.is_(None))
    if by_id:
        unclaimed_now = or_(WorkItem.claimed_by_id.is_(None), WorkItem.lease_expires_at < now)
        offered = or_(mine, and_(WorkItem.assignee_id.is_(None), offer))
        return (
            select(WorkItem)
            .where(WorkItem.id == bindparam("item_id"), *live, unclaimed_now, offered)
            .with_for_update(skip_locked=True),
        )
    lapsed = WorkItem.lease_expires_at < now
    if arrays:
        # A condition that changes no answer (a lease's end is after -infinity) but does change
        # what the planner expects. PostgreSQL keeps one plan for the prepared claim statement,
        # made without knowing :now; from `< :now` alone it expects a third of the table to have
        # lapsed, that plan looks dearer than planning anew, and every claim then paid for
        # planning (0.8 ms of the server's CPU, half of what a claim cost it). A range (`>
        # -infinity` pairs with `< :now`) makes it expect a few, read from ix_work_items_lease.
        # No `claimed_by_id IS NOT NULL` (a lapsed lease has a holder anyway: a release clears
        # both): with it, statistics taken while few items were claimed sent the probe down
        # ix_work_items_queue through every claimed item of the tenant, none of them lapsed, on
        # every claim (4,000 claimed items: 544 buffers, 2 ms; the claims bench's backends spent
        # 4.6 ms a claim over 20,000 items).
        lapsed = and_(lapsed, WorkItem.lease_expires_at > literal_column("'-infinity'::timestamptz"))
    return tuple(
        select(WorkItem)
        .where(*live, probe, actionable(arrays))
        .order_by(*QUEUE_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
        for probe in (
            and_(WorkItem.claimed_by_id.is_(None), WorkItem.assignee_id.is_(None), offer),
            and_(mine, or_(WorkItem.claimed_by_id.is_(None), WorkItem.lease_expires_at < now)),
            and_(lapsed, WorkItem.assignee_id.is_(None), offer),
        )
    )


def claimable(principal: Principal, now: datetime) -> ColumnElement[bool]:
    return and_(
        in_tenant(principal),
        WorkItem.deleted_at.is_(None),
        WorkItem.is_open == true(),
        unclaimed(now),
        offered_to(principal),
    )
