"""Reading work items: one item or a page of them, as the API shows them (labels,
dependencies, offer, claim, saga link and SLA state), for the principal's tenant only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Literal

from sqlalchemy import and_, literal, or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.item_plans import CompensationPlan, Raci, RiskAssessment, TemplateApplied
from models.principal import Principal, PrincipalType, Scope
from models.sla import SlaSpec
from models.work_api import (
    AgentOffer,
    ClaimRead,
    HumanOffer,
    ItemHitl,
    PartyRef,
    SagaLink,
    WorkItemPage,
    WorkItemRead,
)
from models.work_item_types import WorkItemType, effective_risk, required_capabilities
from models.work_tables import DEPENDENCIES, LABELS, WorkItem
from orchestrator.errors import Forbidden, InvalidInput, NotFound
from orchestrator.storage.cursors import decode_cursor, encode_cursor
from orchestrator.work.access import require
from orchestrator.work.types import types_of


def load_item(session: Session, principal: Principal, item_id: str, *, lock: bool = False) -> WorkItem:
    """An item the principal may see; 404 for a missing, deleted or other tenant's one alike."""
    query = select(WorkItem).where(WorkItem.id == item_id)
    if lock:
        query = query.with_for_update()
    item = session.scalar(query)
    if item is None or item.deleted_at is not None or not principal.sees(item.tenant):
        raise NotFound(f"no work item {item_id!r}")
    return item


def get_item(session: Session, principal: Principal, item_id: str) -> WorkItemRead:
    require(principal, Scope.work_read)
    return read_items(session, [load_item(session, principal, item_id)])[0]


def list_items(
    session: Session,
    principal: Principal,
    *,
    type: str | None = None,
    status: str | None = None,
    label: str | None = None,
    assignee: str | None = None,
    reporter: str | None = None,
    parent_id: str | None = None,
    tenant: str | None = None,
    saga_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> WorkItemPage:
    """Newest first, paged by an opaque cursor."""
    require(principal, Scope.work_read)
    query = select(WorkItem).where(WorkItem.deleted_at.is_(None))
    if tenant is not None:
        if not principal.sees(tenant):
            raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
        query = query.where(WorkItem.tenant == tenant)
    elif not principal.all_tenants:
        query = query.where(WorkItem.tenant == principal.tenant)
    if type is not None:
        query = query.where(WorkItem.type == type)
    if status is not None:
        query = query.where(WorkItem.status == status)
    if parent_id is not None:
        query = query.where(WorkItem.parent_id == parent_id)
    if saga_id is not None:
        query = query.where(WorkItem.saga_id == saga_id)
    if label is not None:
        query = query.where(select(literal(1)).where(LABELS.c.item_id == WorkItem.id, LABELS.c.label == label).exists())
    for field, value in (("assignee", assignee), ("reporter", reporter)):
        if value is not None:
            kind, ident = parse_party(value, field)
            query = query.where(getattr(WorkItem, f"{field}_type") == kind, getattr(WorkItem, f"{field}_id") == ident)
    if cursor:
        created, last_id = decode_cursor(cursor, datetime, str)
        query = query.where(
            or_(WorkItem.created_at < created, and_(WorkItem.created_at == created, WorkItem.id < last_id))
        )
    rows = session.scalars(query.order_by(WorkItem.created_at.desc(), WorkItem.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return WorkItemPage(items=read_items(session, page), next_cursor=next_cursor)


def read_items(session: Session, items: Sequence[WorkItem]) -> list[WorkItemRead]:
    """API views of items, their labels and dependencies fetched in two queries for all."""
    ids = [i.id for i in items]
    labels: dict[str, list[str]] = defaultdict(list)
    deps: dict[str, list[str]] = defaultdict(list)
    if ids:
        for item_id, label in session.execute(
            select(LABELS.c.item_id, LABELS.c.label).where(LABELS.c.item_id.in_(ids)).order_by(LABELS.c.label)
        ):
            labels[item_id].append(label)
        for item_id, dep in session.execute(
            select(DEPENDENCIES.c.item_id, DEPENDENCIES.c.depends_on_id)
            .where(DEPENDENCIES.c.item_id.in_(ids))
            .order_by(DEPENDENCIES.c.depends_on_id)
        ):
            deps[item_id].append(dep)
    types = types_of(session, {i.type for i in items})
    return [item_view(i, labels[i.id], deps[i.id], types.get(i.type)) for i in items]


class ItemValues(SimpleNamespace):
    """A work item's attributes as plain values, named as ``WorkItem``'s (a claim statement's
    answer, ``claim_statement``): what :func:`item_view` reads, without the ORM's instrumented
    attributes, whose reads cost a claim about a tenth of its Python."""


def item_view(
    item: WorkItem | ItemValues, labels: list[str], dependencies: list[str], item_type: WorkItemType | None = None
) -> WorkItemRead:
    offer: HumanOffer | AgentOffer | None = None
    if item.offer_type == "human":
        offer = HumanOffer(scope=item.offer_scope or "work:claim", group=item.offer_group)
    elif item.offer_type == "agent":
        offer = AgentOffer(capability=item.offer_capability)
    claim = None
    if item.claimed_by_id is not None and item.claimed_by_type is not None and item.claimed_at is not None:
        claim = ClaimRead(
            type=PrincipalType(item.claimed_by_type),
            id=item.claimed_by_id,
            at=item.claimed_at,
            lease_epoch=item.lease_epoch,
            lease_expires_at=item.lease_expires_at,
            state=holder_state(item, utcnow()),
        )
    return WorkItemRead(
        id=item.id,
        code=item.code,
        tenant=item.tenant,
        type=item.type,
        lifecycle=item.lifecycle,
        origin=item.origin,
        title=item.title,
        description=item.description,
        priority=item.priority,
        status=item.status,
        created_by=item.created_by,
        reporter=party_ref(item.reporter_type, item.reporter_id),
        assignee=party_ref(item.assignee_type, item.assignee_id),
        labels=labels,
        dependencies=dependencies,
        parent_id=item.parent_id,
        payload=item.payload,
        metadata=item.meta,
        result=item.result,
        reason=item.reason,
        due_at=item.due_at,
        idempotence_key=item.idempotence_key,
        offer=offer,
        risk_level=effective_risk(item_type, item.risk_level),
        required_capabilities=required_capabilities(
            item_type, item.offer_capability if item.offer_type == "agent" else None
        ),
        claim=claim,
        lease_epoch=item.lease_epoch,
        version=item.version,
        saga=saga_link(item),
        trace_id=item.trace_id,
        sla=SlaSpec.model_validate(item.sla) if item.sla else None,
        sla_warned_at=item.sla_warned_at,
        sla_breached_at=item.sla_breached_at,
        sla_breach_count=item.sla_breach_count,
        progress=item.progress,
        progress_at=item.progress_at,
        stalled_at=item.stalled_at,
        hitl=ItemHitl.model_validate(item.hitl) if item.hitl else None,
        raci=Raci.model_validate(item.raci) if item.raci else None,
        related_goals=item.related_goals or [],
        risk_assessment=RiskAssessment.model_validate(item.risk_assessment) if item.risk_assessment else None,
        templates_applied=[TemplateApplied.model_validate(t) for t in item.templates_applied or []],
        timeout_ms=item.timeout_ms,
        overall_timeout_ms=item.overall_timeout_ms,
        compensation=CompensationPlan.model_validate(item.compensation) if item.compensation else None,
        created_at=item.created_at,
        updated_at=item.updated_at,
        started_at=item.started_at,
        completed_at=item.completed_at,
        deleted_at=item.deleted_at,
    )


def holder_state(item: WorkItem | ItemValues, now: datetime) -> Literal["working", "slow", "stalled", "lapsed"]:
    """Dead (lapsed), stalled, slow or working: told apart by the lease, the progress clock and the SLA."""
    if item.lease_expires_at is not None and item.lease_expires_at <= now:
        return "lapsed"
    if item.stalled_at is not None:
        return "stalled"
    if item.sla_warned_at is not None or item.sla_breached_at is not None:
        return "slow"
    return "working"


def saga_link(item: WorkItem | ItemValues) -> SagaLink | None:
    if item.saga_id is None or item.saga_step is None or item.saga_step_index is None:
        return None
    return SagaLink(
        saga_id=item.saga_id,
        step=item.saga_step,
        step_index=item.saga_step_index,
        phase=item.saga_phase or "forward",
        attempt=item.saga_attempt or 1,
        member=item.saga_member,
    )


def parse_party(value: str, field: str) -> tuple[str, str]:
    kind, sep, ident = value.partition(":")
    if not sep or not ident or kind not in PrincipalType.__members__:
        raise InvalidInput(
            f"{field} must look like user:<id> or agent:<id>", details=[{"path": field, "message": "malformed"}]
        )
    return kind, ident


def party_ref(kind: str | None, ident: str | None) -> PartyRef | None:
    return PartyRef(type=PrincipalType(kind), id=ident) if kind and ident else None
