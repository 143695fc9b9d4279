"""Next work for a user or an agent: the next-work doc's four rules, in order.

1. subtasks assigned to me in ``todo`` whose dependencies are resolved;
2. tasks assigned to me in ``todo`` that have no subtasks and whose dependencies are resolved;
3. tasks and subtasks I reported that are ``blocked``;
4. tasks and subtasks I reported that are in ``review``;
each oldest first. The doc's sketch asks one query per candidate; here the four rules are one
``UNION ALL`` of four index-ordered ``LIMIT 1`` probes, with the dependency and subtask checks as
anti-joins, so an answer costs the same two statements (the pick, then the item's labels and
dependencies) however many candidates an assignee has. The pick is built once (per tenant
variant) with bind parameters: building the four probes anew costs milliseconds of CPU a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Subquery, and_, bindparam, literal, select, true, union_all
from sqlalchemy.orm import Session, aliased

from models.lifecycles import RESOLVED_STATUSES
from models.principal import Principal, PrincipalType, Scope
from models.work_api import NextWork, NextWorkMetadata
from models.work_tables import DEPENDENCIES, WorkItem
from orchestrator.errors import Forbidden
from orchestrator.work.access import require
from orchestrator.work.views import read_items


@dataclass(frozen=True)
class Rule:
    """One of the next-work rules: its level, its description, and the criteria it matches."""

    level: int
    description: str
    criteria: tuple[str, ...]


RULES = {
    1: Rule(1, "Assigned subtask in todo status", ("assigned_to_me", "subtask", "status_todo", "dependencies_met")),
    2: Rule(
        2,
        "Assigned task without subtasks in todo status",
        ("assigned_to_me", "task", "status_todo", "no_subtasks", "dependencies_met"),
    ),
    3: Rule(3, "Reported work in blocked status requiring resolution", ("reported_by_me", "status_blocked")),
    4: Rule(4, "Reported work in review status awaiting approval", ("reported_by_me", "status_review")),
}
NOTHING = NextWorkMetadata(priorityLevel=0, priorityDescription="No work available", matchedCriteria=[])


def next_work(session: Session, principal: Principal, assignee_type: PrincipalType, assignee_id: str) -> NextWork:
    """The next item for ``assignee_type:assignee_id``; asking for someone else needs work:supervise."""
    require(principal, Scope.work_read)
    if (assignee_type, assignee_id) != (principal.type, principal.id) and not principal.has(Scope.work_supervise):
        raise Forbidden(f"{principal.ref} may only ask for its own next work (work:supervise allows others')")
    picked = session.execute(
        _pick(principal.all_tenants), _pick_params(principal, assignee_type.value, assignee_id)
    ).first()
    if picked is None:
        return NextWork(work=None, metadata=NOTHING)
    level, item_id = picked
    item = session.get(WorkItem, item_id)
    assert item is not None
    rule = RULES[level]
    return NextWork(
        work=read_items(session, [item])[0],
        metadata=NextWorkMetadata(
            priorityLevel=rule.level, priorityDescription=rule.description, matchedCriteria=list(rule.criteria)
        ),
    )


def pick_query(principal: Principal, kind: str, ident: str) -> Select[Any]:
    """The pick for one assignee, its values bound (``next_work`` binds them at execution)."""
    return _pick(principal.all_tenants).params(_pick_params(principal, kind, ident))


def _pick_params(principal: Principal, kind: str, ident: str) -> dict[str, str]:
    params = {"kind": kind, "ident": ident}
    if not principal.all_tenants:
        params["tenant"] = principal.tenant
    return params


@cache
def _pick(all_tenants: bool) -> Select[Any]:
    kind, ident = bindparam("kind", type_=String()), bindparam("ident", type_=String())
    tenant = true() if all_tenants else WorkItem.tenant == bindparam("tenant", type_=String())
    assigned = and_(WorkItem.assignee_type == kind, WorkItem.assignee_id == ident)
    reported = and_(WorkItem.reporter_type == kind, WorkItem.reporter_id == ident)
    live = WorkItem.deleted_at.is_(None)
    task_or_subtask = WorkItem.type.in_(("task", "subtask"))
    probes = [
        _probe(1, assigned, WorkItem.type == "subtask", WorkItem.status == "todo", live, tenant, _dependencies_met()),
        _probe(
            2,
            assigned,
            WorkItem.type == "task",
            WorkItem.status == "todo",
            live,
            tenant,
            _no_subtasks(),
            _dependencies_met(),
        ),
        _probe(3, reported, task_or_subtask, WorkItem.status == "blocked", live, tenant),
        _probe(4, reported, task_or_subtask, WorkItem.status == "review", live, tenant),
    ]
    picks = union_all(*(select(p.c.level, p.c.id) for p in probes)).subquery("picks")
    return select(picks.c.level, picks.c.id).order_by(picks.c.level).limit(1)


def _probe(level: int, *conditions: ColumnElement[bool]) -> Subquery:
    """The oldest item matching one rule: a LIMIT 1 walk down the rule's index."""
    return (
        select(literal(level).label("level"), WorkItem.id.label("id"))
        .where(*conditions)
        .order_by(WorkItem.created_at, WorkItem.id)
        .limit(1)
        .subquery(f"rule{level}")
    )


def _dependencies_met() -> ColumnElement[bool]:
    """No dependency that is missing, deleted, or not yet done/cancelled."""
    dep = aliased(WorkItem, name="dep")
    resolved = (
        select(literal(1))
        .where(dep.id == DEPENDENCIES.c.depends_on_id, dep.deleted_at.is_(None), dep.status.in_(RESOLVED_STATUSES))
        .exists()
    )
    blocking = select(literal(1)).select_from(DEPENDENCIES).where(DEPENDENCIES.c.item_id == WorkItem.id, ~resolved)
    return ~blocking.exists()


def _no_subtasks() -> ColumnElement[bool]:
    child = aliased(WorkItem, name="child")
    return ~(
        select(literal(1))
        .where(child.parent_id == WorkItem.id, child.type == "subtask", child.deleted_at.is_(None))
        .exists()
    )
