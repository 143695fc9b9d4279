"""Creating, reading, listing, updating and soft-deleting work items."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.lifecycles import is_terminal, lifecycle_for
from models.policies import POLICY_FIELD
from models.principal import Principal, Scope, scope_problem
from models.work_api import (
    AgentOffer,
    HumanOffer,
    PartyRef,
    WorkItemCreate,
    WorkItemRead,
    WorkItemUpdate,
)
from models.work_item_types import PARENT_REQUIRED, PARENT_TYPES
from models.work_tables import DEPENDENCIES, LABELS, WorkItem, WorkItemDependency, WorkItemLabel
from orchestrator.errors import Conflict, InvalidInput, PayloadTooLarge
from orchestrator.storage.db import SessionFactory
from orchestrator.work import audit, routing_hooks, timeouts
from orchestrator.work.access import require, tenant_for_write
from orchestrator.work.gates import policies
from orchestrator.work.gates.policies import policy_id_of as item_policy
from orchestrator.work.ids import work_item_id
from orchestrator.work.links import report_outcome
from orchestrator.work.sla import clock as sla
from orchestrator.work.tokens import unknown_groups
from orchestrator.work.types import check_policy, check_risk, get_type, validate_item
from orchestrator.work.views import load_item, read_items

ID_ATTEMPTS = 5
DEFAULT_OFFER = HumanOffer()


def create_item(
    sessions: SessionFactory, principal: Principal, body: WorkItemCreate, *, max_payload_bytes: int
) -> tuple[WorkItemRead, bool]:
    """Create an item, or return the one a retry with the same idempotence key created.

    The same key with another body is a 409; it never creates a second item.
    """
    require(principal, Scope.work_write)
    tenant = tenant_for_write(principal, body.tenant)
    check_size(body.payload, body.metadata, max_payload_bytes)
    check_offer(body.offer)
    with sessions.begin() as session:
        item, created = insert_item(session, principal, tenant, body)
        return read_items(session, [item])[0], created


def insert_item(session: Session, principal: Principal, tenant: str, body: WorkItemCreate) -> tuple[WorkItem, bool]:
    """Create an item of ``tenant`` in the session's transaction (checked, audited, routed), or
    find the one an earlier request with the same idempotence key created (False). The same key
    with another body is a 409. The caller checked the principal's scope, the tenant, the
    payload's size and the offer."""
    digest = _request_hash(tenant, body)
    for salt in range(ID_ATTEMPTS):
        if body.idempotence_key is not None:
            existing = _by_key(session, tenant, body.idempotence_key, digest)
            if existing is not None:
                return existing, False
        item = _new_item(session, principal, tenant, body, digest, salt)
        try:
            with session.begin_nested():
                session.add(item)
                session.flush()
        except IntegrityError:
            continue  # an id collision, or a concurrent create with the same key: look again
        _write_links(session, item.id, labels=body.labels, dependencies=body.dependencies)
        if body.sla is not None:
            sla.schedule(session, item, body.sla, item.created_at)
        timeouts.arm_at_creation(session, item, item.created_at)
        audit.record(session, item, "created", principal.ref, to_status=item.status, details={"type": item.type})
        if item.assignee_id is not None:
            audit.record(
                session,
                item,
                "assigned",
                principal.ref,
                details={"assignee": _ref(item.assignee_type, item.assignee_id)},
            )
        routing_hooks.item_created(session, item, principal.ref)
        return item, True
    raise Conflict("could not allocate a work-item id; try again")


def _new_item(
    session: Session, principal: Principal, tenant: str, body: WorkItemCreate, digest: str, salt: int
) -> WorkItem:
    item_type = get_type(session, body.type)
    validate_item(item_type, schema_document(body.model_dump(mode="json", exclude_none=True)))
    check_risk(item_type, body.risk_level)
    check_policy(item_type, body.payload)
    policies.check_usable(session, tenant, body.payload)
    lifecycle = lifecycle_for(item_type.lifecycle, body.origin)
    _check_parent(session, tenant, body.type, body.parent_id, item_id=None)
    _check_dependencies(session, tenant, body.dependencies, item_id=None)
    if body.sla is not None:
        unknown = unknown_groups(session, body.sla.groups())
        if unknown:
            raise InvalidInput(
                f"the SLA escalates to group(s) no principal is in: {', '.join(unknown)}",
                details=[{"path": "sla", "message": f"unknown group {g!r}"} for g in unknown],
            )
    now = utcnow()
    item_id = work_item_id(tenant, body.type, now, body.idempotence_key, salt)
    reporter = body.reporter or PartyRef(type=principal.type, id=principal.id)
    offer = body.offer or DEFAULT_OFFER
    item = WorkItem(
        id=item_id,
        code=body.code or item_id,
        tenant=tenant,
        type=body.type,
        lifecycle=lifecycle.name,
        origin=body.origin,
        title=body.title,
        description=body.description,
        priority=body.priority,
        status=lifecycle.initial,
        is_open=not is_terminal(lifecycle, lifecycle.initial),
        created_by=principal.ref,
        reporter_type=reporter.type.value,
        reporter_id=reporter.id,
        assignee_type=body.assignee.type.value if body.assignee else None,
        assignee_id=body.assignee.id if body.assignee else None,
        parent_id=body.parent_id,
        payload=body.payload,
        meta=body.metadata,
        due_at=body.due_at,
        idempotence_key=body.idempotence_key,
        request_hash=digest,
        lease_epoch=0,
        version=1,
        sla=body.sla.model_dump(mode="json") if body.sla else None,
        stall=body.stall.model_dump(mode="json") if body.stall else None,
        sla_breach_count=0,
        risk_level=body.risk_level.value if body.risk_level is not None else None,
        raci=body.raci.model_dump(mode="json") if body.raci else None,
        related_goals=body.related_goals,
        risk_assessment=body.risk_assessment.model_dump(mode="json") if body.risk_assessment else None,
        templates_applied=[t.model_dump(mode="json") for t in body.templates_applied],
        timeout_ms=body.timeout_ms,
        overall_timeout_ms=body.overall_timeout_ms,
        compensation=body.compensation.model_dump(mode="json") if body.compensation else None,
        created_at=now,
        updated_at=now,
    )
    _apply_offer(item, offer)
    return item


def _by_key(session: Session, tenant: str, key: str, digest: str) -> WorkItem | None:
    item = session.scalar(select(WorkItem).where(WorkItem.tenant == tenant, WorkItem.idempotence_key == key))
    if item is not None and item.request_hash != digest:
        raise Conflict(
            f"idempotence key {key!r} was already used for a different work item ({item.id}); "
            "use a new key for new work",
            details=[{"path": "idempotence_key", "message": f"already names {item.id} with another body"}],
        )
    return item


def update_item(
    session: Session,
    principal: Principal,
    item_id: str,
    body: WorkItemUpdate,
    *,
    if_match: int | None,
    max_payload_bytes: int,
) -> WorkItemRead:
    """Change the given fields; with a version (body or If-Match) only if nobody changed it since."""
    require(principal, Scope.work_write)
    check_offer(body.offer)
    item = load_item(session, principal, item_id, lock=True)
    # Both preconditions hold, when both are given: a stale one must not be overruled by the other.
    for expected in (body.version, if_match):
        if expected is not None and expected != item.version:
            raise Conflict(
                f"work item {item_id} is at version {item.version}, not {expected}; read it again and retry",
                details=[{"path": "version", "message": f"current version is {item.version}"}],
            )
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    if not changes:
        return read_items(session, [item])[0]
    payload = changes.get("payload", item.payload)
    metadata = changes.get("metadata", item.meta)
    check_size(payload, metadata, max_payload_bytes)
    _check_policy_kept(principal, item, payload)
    document = {
        "title": changes.get("title", item.title),
        "description": changes.get("description", item.description),
        "payload": payload,
        "metadata": metadata,
    }
    item_type = get_type(session, item.type)
    validate_item(item_type, schema_document({k: v for k, v in document.items() if v is not None}))
    check_policy(item_type, payload)
    if "payload" in changes:
        policies.check_usable(session, item.tenant, payload)
    if "parent_id" in changes:
        _check_parent(session, item.tenant, item.type, body.parent_id, item_id=item.id)
        item.parent_id = body.parent_id
    if "dependencies" in changes:
        _check_dependencies(session, item.tenant, body.dependencies or [], item_id=item.id)
    for name in ("title", "description", "priority", "payload", "due_at", "timeout_ms", "overall_timeout_ms"):
        if name in changes:
            setattr(item, name, getattr(body, name))
    for name in ("raci", "risk_assessment", "compensation"):
        if name in changes:
            value = getattr(body, name)
            setattr(item, name, value.model_dump(mode="json") if value is not None else None)
    if "related_goals" in changes:
        item.related_goals = body.related_goals or []
    if "templates_applied" in changes:
        item.templates_applied = [t.model_dump(mode="json") for t in body.templates_applied or []]
    timeouts.rearm(session, item, set(changes), utcnow())
    if "metadata" in changes:
        item.meta = body.metadata or {}
    if "reporter" in changes:
        item.reporter_type, item.reporter_id = _party(body.reporter)
    if "offer" in changes:
        _apply_offer(item, body.offer or DEFAULT_OFFER)
    if "assignee" in changes:
        before = _ref(item.assignee_type, item.assignee_id)
        item.assignee_type, item.assignee_id = _party(body.assignee)
        after = _ref(item.assignee_type, item.assignee_id)
        if before != after:
            audit.record(session, item, "assigned", principal.ref, details={"assignee": after, "previous": before})
    _write_links(
        session,
        item.id,
        labels=body.labels if "labels" in changes else None,
        dependencies=body.dependencies if "dependencies" in changes else None,
        replace=True,
    )
    touch(item)
    audit.record(session, item, "updated", principal.ref, details={"fields": sorted(changes)})
    return read_items(session, [item])[0]


def delete_item(session: Session, principal: Principal, item_id: str) -> None:
    """Soft delete: the item leaves every list and queue; its audit trail stays."""
    require(principal, Scope.work_write)
    item = load_item(session, principal, item_id, lock=True)
    item.deleted_at = utcnow()
    item.claimed_by_type = item.claimed_by_id = None
    item.lease_expires_at = None
    was_open, item.is_open = item.is_open, False
    touch(item)
    audit.record(session, item, "deleted", principal.ref, from_status=item.status)
    if was_open:
        sla.cancel(session, item.id)
        # A saga waiting on it must not wait forever: the step fails.
        item.reason = f"deleted by {principal.ref}"
        report_outcome(session, item, principal.ref)


def touch(item: WorkItem) -> None:
    item.version += 1
    item.updated_at = utcnow()


def _party(ref: PartyRef | None) -> tuple[str | None, str | None]:
    return (ref.type.value, ref.id) if ref is not None else (None, None)


def _ref(kind: str | None, ident: str | None) -> str | None:
    return f"{kind}:{ident}" if kind and ident else None


def offer_scope_problem(offer: HumanOffer | AgentOffer | None) -> str | None:
    """What is wrong with an offer's scope coming in: it must be workyard's or a custom one (a
    misspelt one of workyard's, work:cliam, would reach nobody but the admins)."""
    return scope_problem(offer.scope) if isinstance(offer, HumanOffer) else None


def check_offer(offer: HumanOffer | AgentOffer | None) -> None:
    if (problem := offer_scope_problem(offer)) is not None:
        raise InvalidInput(problem, details=[{"path": "offer.scope", "message": problem}])


def _apply_offer(item: WorkItem, offer: HumanOffer | AgentOffer) -> None:
    item.offer_type = offer.type
    item.offer_scope = offer.scope if isinstance(offer, HumanOffer) else None
    item.offer_group = offer.group if isinstance(offer, HumanOffer) else None
    item.offer_capability = offer.capability if isinstance(offer, AgentOffer) else None


def schema_document(data: dict[str, Any]) -> dict[str, Any]:
    """What a type's JSON Schema sees: the item as submitted, without the envelope fields."""
    return {k: v for k, v in data.items() if k not in _ENVELOPE}


# Fields a type's JSON Schema does not see: checked by the API's own models, and (the spec's
# fields added later) unknown to schemas registered before them, which may forbid other fields.
_ENVELOPE = frozenset(
    {
        "idempotence_key",
        "tenant",
        "version",
        "raci",
        "related_goals",
        "risk_assessment",
        "templates_applied",
        "timeout_ms",
        "overall_timeout_ms",
        "compensation",
    }
)


def _check_policy_kept(principal: Principal, item: WorkItem, payload: Any) -> None:
    """The policy an item names gates its work: whoever may edit the item may not drop it or swap
    it for a weaker one (only someone who may write policies can). Naming one where there was none
    only adds a gate."""
    named = item_policy(item)
    if named is None or principal.has(Scope.policies_write.value):
        return
    after = payload.get(POLICY_FIELD) if isinstance(payload, dict) else None
    if after != named:
        raise Conflict(
            f"{item.id} is gated by policy {named!r}; changing or removing it needs the policies:write scope",
            details=[{"path": f"payload.{POLICY_FIELD}", "message": f"stays {named!r}"}],
        )


def _request_hash(tenant: str, body: WorkItemCreate) -> str:
    data = body.model_dump(mode="json", exclude={"idempotence_key"})
    if data.get("risk_level") is None:
        # Left out of the hash when not given, as it was before items had one: a retry of a create
        # made before the upgrade still finds its item.
        data.pop("risk_level", None)
    for name in (
        "raci",
        "related_goals",
        "risk_assessment",
        "templates_applied",
        "timeout_ms",
        "overall_timeout_ms",
        "compensation",
    ):
        # Likewise the spec's fields added later: left out when not given.
        if not data.get(name):
            data.pop(name, None)
    data["tenant"] = tenant
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_size(payload: Any, metadata: Any, limit: int) -> None:
    size = len(json.dumps(payload, separators=(",", ":"))) + len(json.dumps(metadata, separators=(",", ":")))
    if size > limit:
        raise PayloadTooLarge(
            f"payload and metadata are {size} bytes; the limit is {limit} (WORKYARD_WORK_ITEM_MAX_PAYLOAD_BYTES)",
            details=[{"path": "payload", "message": f"{size} bytes > {limit}"}],
        )


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _check_parent(session: Session, tenant: str, item_type: str, parent_id: str | None, *, item_id: str | None) -> None:
    allowed = PARENT_TYPES.get(item_type)
    if parent_id is None:
        if item_type in PARENT_REQUIRED:
            raise InvalidInput(
                f"{_a(item_type)} needs a parent",
                details=[
                    {"path": "parent_id", "message": f"required: {' or '.join(_a(t) for t in sorted(allowed or ()))}"}
                ],
            )
        return
    parent = session.get(WorkItem, parent_id)
    if parent is None or parent.tenant != tenant or parent.deleted_at is not None:
        raise InvalidInput(f"no work item {parent_id!r}", details=[{"path": "parent_id", "message": "no such item"}])
    if allowed is not None and parent.type not in allowed:
        what = " or ".join(_a(t) for t in sorted(allowed)) if allowed else "no parent"
        raise InvalidInput(
            f"{_a(item_type)} cannot have {_a(parent.type)} as parent; it takes {what}",
            details=[{"path": "parent_id", "message": f"is {_a(parent.type)}; expected {what}"}],
        )
    # Walk up: the new parent must not be the item itself or one of its descendants.
    seen: set[str] = set()
    current: WorkItem | None = parent
    while current is not None and current.id not in seen:
        if current.id == item_id:
            raise InvalidInput(
                "the parent would make a cycle", details=[{"path": "parent_id", "message": "is a descendant"}]
            )
        seen.add(current.id)
        current = session.get(WorkItem, current.parent_id) if current.parent_id else None


def _check_dependencies(session: Session, tenant: str, deps: Iterable[str], *, item_id: str | None) -> None:
    deps = list(dict.fromkeys(deps))
    if not deps:
        return
    if item_id is not None and item_id in deps:
        raise InvalidInput(
            "a work item cannot depend on itself",
            details=[{"path": f"dependencies.{deps.index(item_id)}", "message": "is the item itself"}],
        )
    found = set(
        session.scalars(
            select(WorkItem.id).where(WorkItem.id.in_(deps), WorkItem.tenant == tenant, WorkItem.deleted_at.is_(None))
        )
    )
    missing = [(i, d) for i, d in enumerate(deps) if d not in found]
    if missing:
        raise InvalidInput(
            f"unknown dependencies: {', '.join(d for _, d in missing)}",
            details=[{"path": f"dependencies.{i}", "message": "no such work item"} for i, _ in missing],
        )
    if item_id is not None:
        cycle = _reaches(session, deps, item_id)
        if cycle is not None:
            raise InvalidInput(
                f"dependency on {cycle} makes a cycle: it already depends on {item_id}, directly or not",
                details=[{"path": f"dependencies.{deps.index(cycle)}", "message": "makes a dependency cycle"}],
            )


def _reaches(session: Session, starts: list[str], target: str) -> str | None:
    """The first of ``starts`` from which ``target`` is reachable through dependencies, if any."""
    for start in starts:
        found = session.execute(
            text(
                "WITH RECURSIVE reach(id) AS ("
                " SELECT depends_on_id FROM work_item_dependencies WHERE item_id = :start"
                " UNION SELECT d.depends_on_id FROM work_item_dependencies d JOIN reach r ON d.item_id = r.id"
                ") SELECT 1 FROM reach WHERE id = :target LIMIT 1"
            ),
            {"start": start, "target": target},
        ).first()
        if found is not None or start == target:
            return start
    return None


def _write_links(
    session: Session,
    item_id: str,
    *,
    labels: list[str] | None,
    dependencies: list[str] | None,
    replace: bool = False,
) -> None:
    if labels is not None:
        if replace:
            session.execute(delete(WorkItemLabel).where(WorkItemLabel.item_id == item_id))
        rows = [{"item_id": item_id, "label": label} for label in dict.fromkeys(labels)]
        if rows:
            session.execute(insert(LABELS), rows)
    if dependencies is not None:
        if replace:
            session.execute(delete(WorkItemDependency).where(WorkItemDependency.item_id == item_id))
        rows = [{"item_id": item_id, "depends_on_id": dep} for dep in dict.fromkeys(dependencies)]
        if rows:
            session.execute(insert(DEPENDENCIES), rows)
