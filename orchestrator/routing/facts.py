"""A work item's facts as routing reads them (``inputs.ItemFacts``), and the one statement a
decision starts with: the item's labels and whether its tenant's routing rules or fleet changed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import JSON, BindParameter, Select, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from models.principal import ALL_TENANTS
from models.work_item_types import effective_risk, required_capabilities
from models.work_tables import LABELS, WorkItem
from orchestrator.routing import fleet as fleets
from orchestrator.routing import rules
from orchestrator.routing.inputs import ItemFacts
from orchestrator.storage import driver_sql
from orchestrator.work.types import get_type


class Opening(NamedTuple):
    """What a decision reads first, in one round trip: the item's labels, its tenant's rules'
    :data:`rules.Stamp` and its tenant's fleet stamps (``fleet.Stamps``)."""

    labels: frozenset[str]
    rules_stamp: rules.Stamp
    fleet_stamps: fleets.Stamps


def opening(session: Session, item: WorkItem) -> Opening:
    """The item's labels and whether its tenant's routing rules or fleet changed: one round trip,
    where reading them apart took three (a decision's whole budget is a few milliseconds)."""
    params = {"item": item.id, "owners": sorted({item.tenant, ALL_TENANTS}), "tenant": item.tenant}
    if driver_sql.supported(session):
        # Past SQLAlchemy, as the candidates' state (``source``): its execution costs more than the round trip.
        [(labels, count, newest, own, operators)] = driver_sql.fetch(session, _READ_PG, params)
    else:
        labels, count, newest, own, operators = session.execute(_READ, params).one()
    # A list either way (the JSON type decodes SQLite's text); PostgreSQL's json_agg of no rows is null.
    return Opening(frozenset(labels or ()), (count, newest), (own, operators))


def item_facts(session: Session, item: WorkItem, labels: Iterable[str] | None = None) -> ItemFacts:
    """``labels``: the item's, if the caller read them already (:func:`opening`)."""
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
        # A person approves it if its routing rule or its type says so.
        hitl=bool(item.hitl and item.hitl.get("required")) or bool(item_type.hitl and item_type.hitl.required),
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
    # One array parameter on PostgreSQL: one statement text, prepared once.
    owners: BindParameter[Any] = (
        bindparam("owners", type_=ARRAY(String())) if postgres else bindparam("owners", expanding=True)
    )
    # The labels as one JSON array: exact whatever a label holds (a separator could be in one).
    gather = func.json_agg if postgres else func.json_group_array
    item = bindparam("item", type_=LABELS.c.item_id.type)
    labels = select(gather(LABELS.c.label, type_=JSON)).where(LABELS.c.item_id == item).scalar_subquery()
    count, newest = rules.stamp_columns(owners, array=postgres)
    own, operators = fleets.stamp_columns(bindparam("tenant", type_=String()))
    return select(labels, count, newest, own, operators)


_READ = _build(postgres=False)
_READ_PG = driver_sql.compile_statement(_build(postgres=True))
