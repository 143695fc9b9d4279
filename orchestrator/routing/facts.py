"""A work item's facts as routing reads them (``inputs.ItemFacts``), and the one statement a
decision starts with: the item's labels and whether its tenant's routing rules changed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, BindParameter, Select, bindparam, func, select
from sqlalchemy.orm import Session

from models.principal import ALL_TENANTS
from models.work_item_types import effective_risk, required_capabilities
from models.work_tables import LABELS, WorkItem
from orchestrator.routing import rules
from orchestrator.routing.inputs import ItemFacts
from orchestrator.work.types import get_type


def labels_and_rules(session: Session, item: WorkItem) -> tuple[frozenset[str], rules.Stamp]:
    """The item's labels, and its tenant's rules' :data:`rules.Stamp`: one round trip, where
    reading them apart took two (a decision's whole budget is a few milliseconds)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    params = {"item": item.id, "owners": sorted({item.tenant, ALL_TENANTS})}
    labels, count, newest = session.execute(_READ_PG if postgres else _READ, params).one()
    # A list either way (the JSON type decodes SQLite's text); PostgreSQL's json_agg of no rows is null.
    return frozenset(labels or ()), (count, newest)


def item_facts(session: Session, item: WorkItem, labels: Iterable[str] | None = None) -> ItemFacts:
    """``labels``: the item's, if the caller read them already (:func:`labels_and_rules`)."""
    if labels is None:
        labels = session.scalars(select(LABELS.c.label).where(LABELS.c.item_id == item.id))
    labels = frozenset(labels)
    meta = item.meta or {}
    item_type = get_type(session, item.type)
    # An item offered to agents with a capability needs it too, whatever a rule selects.
    offered = item.offer_capability if item.offer_type == "agent" else None
    return ItemFacts(
        id=item.id,
        tenant=item.tenant,
        type=item.type,
        labels=labels,
        priority=item.priority,
        risk=effective_risk(item_type, item.risk_level),
        capabilities=tuple(required_capabilities(item_type, offered)),
        actions=_names(meta.get("actions")),
        datasets=_names(meta.get("datasets")),
        hitl=bool(item.hitl and item.hitl.get("required")),
        assignee=_ref(item.assignee_type, item.assignee_id),
        holder=_ref(item.claimed_by_type, item.claimed_by_id),
    )


def _names(value: Any) -> frozenset[str]:
    """A list of names from an item's metadata; anything else there means none (metadata is free-form)."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _ref(kind: str | None, ident: str | None) -> str | None:
    return f"{kind}:{ident}" if kind and ident else None


def _build(postgres: bool) -> Select[Any]:
    owners: BindParameter[Any] = bindparam("owners", expanding=True)
    # The labels as one JSON array: exact whatever a label holds (a separator could be in one).
    gather = func.json_agg if postgres else func.json_group_array
    labels = select(gather(LABELS.c.label, type_=JSON)).where(LABELS.c.item_id == bindparam("item")).scalar_subquery()
    count, newest = rules.stamp_columns(owners)
    return select(labels, count, newest)


_READ, _READ_PG = _build(postgres=False), _build(postgres=True)
