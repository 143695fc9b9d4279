"""A work item's facts as routing reads them (``inputs.ItemFacts``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.work_item_types import effective_risk, required_capabilities
from models.work_tables import LABELS, WorkItem
from orchestrator.routing.inputs import ItemFacts
from orchestrator.work.types import get_type


def item_facts(session: Session, item: WorkItem) -> ItemFacts:
    labels = frozenset(session.scalars(select(LABELS.c.label).where(LABELS.c.item_id == item.id)))
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
