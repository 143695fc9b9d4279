"""The policy registry: every version kept, the latest of an id the live one, as routing rules
are. Tenants own their policies; an operator's (tenant ``*``) is shared by every tenant, which may
read it but not change it, and a tenant's own policy of the same id wins over it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.gate_tables import PolicyRow
from models.policies import POLICY_FIELD, RETIRED, PolicyCreate, PolicyRead, PolicySpec
from models.principal import ALL_TENANTS, Principal, Scope
from models.work_tables import WorkItem, WorkItemTypeRow
from orchestrator.errors import Conflict, Forbidden, InvalidInput, NotFound
from orchestrator.work.access import require, tenant_for_write

MAX_POLICIES_PER_TENANT = 1000


def register(session: Session, principal: Principal, body: PolicyCreate) -> tuple[PolicyRead, bool]:
    """Add a version of a policy (its first, for a new id); the live definition again adds
    nothing and answers False."""
    require(principal, Scope.policies_write)
    tenant = tenant_for_write(principal, body.tenant) if body.tenant or not principal.all_tenants else ALL_TENANTS
    spec = body.spec()
    repeated = spec.repeated_checks()
    if repeated:
        raise InvalidInput(
            "a policy's checks need unique ids (default: the kind): give each of the same kind an id",
            details=[{"path": f"checks.{n}.id", "message": f"{spec.checks[n].name!r} again"} for n in repeated],
        )
    document = spec.model_dump(mode="json", by_alias=True)
    latest = _latest(session, tenant, spec.id, lock=True)
    if latest is not None and latest.body == document:
        return read(latest), False
    if latest is None and _count(session, tenant) >= MAX_POLICIES_PER_TENANT:
        raise Conflict(f"tenant {tenant!r} has {MAX_POLICIES_PER_TENANT} policies; reuse one")
    if latest is not None:
        latest.is_latest = False
    row = PolicyRow(
        tenant=tenant,
        id=spec.id,
        version=latest.version + 1 if latest is not None else 1,
        is_latest=True,
        body=document,
        body_hash=_digest(document),
        created_by=principal.ref,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"policy {spec.id!r} was registered concurrently; send it again") from exc
    return read(row), True


def retire(session: Session, principal: Principal, policy_id: str, tenant: str | None) -> PolicyRead:
    """Retire a policy: a new version that gates nothing new (its versions stay readable; registering
    it again brings it back). Refused while open items or a work-item type name it: their gates
    would hold for good. Retiring a retired policy adds nothing."""
    require(principal, Scope.policies_write)
    owner = tenant_for_write(principal, tenant) if tenant or not principal.all_tenants else ALL_TENANTS
    # Taken before anything is read: a create or a type naming the policy meanwhile either
    # committed already (and is counted below) or waits, then finds it retired.
    _anchor(session, [owner], policy_id, exclusive=True)
    latest = _latest(session, owner, policy_id, lock=True)
    if latest is None:
        if not principal.all_tenants and _latest(session, ALL_TENANTS, policy_id) is not None:
            raise Forbidden(f"policy {policy_id!r} is an operator's; only an all-tenant token may retire it")
        raise NotFound(f"no policy {policy_id!r}" + (f" of tenant {owner!r}" if owner != ALL_TENANTS else ""))
    if latest.body.get(RETIRED):
        return read(latest)
    users = _users(session, owner, policy_id)
    if users:
        raise Conflict(
            f"policy {policy_id!r} still gates work: {'; '.join(users)}; finish or move that work first",
            details=[{"path": "id", "message": user} for user in users],
        )
    latest.is_latest = False
    document = {**latest.body, RETIRED: True}
    row = PolicyRow(
        tenant=owner,
        id=policy_id,
        version=latest.version + 1,
        is_latest=True,
        body=document,
        body_hash=_digest(document),
        created_by=principal.ref,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return read(row)


def _users(session: Session, owner: str, policy_id: str) -> list[str]:
    """What the policy of ``owner`` gates still: open items naming it, types naming it (an operator's)."""
    users: list[str] = []
    named = WorkItem.payload[POLICY_FIELD].as_string() == policy_id
    query = select(func.count(), func.min(WorkItem.id)).where(named, WorkItem.is_open, WorkItem.deleted_at.is_(None))
    if owner != ALL_TENANTS:
        query = query.where(WorkItem.tenant == owner)
    count, first = session.execute(query).one()
    if count:
        users.append(f"{count} open item(s) name it (first {first})")
    if owner == ALL_TENANTS:
        types = session.scalars(select(WorkItemTypeRow.name).where(WorkItemTypeRow.approval_policy_id == policy_id))
        users += [f"work-item type {name} names it" for name in types]
    return users


def check_usable(session: Session, tenant: str, payload: Any) -> None:
    """An item may not name a retired policy (one registered, none of its tenant's or the operators'
    versions live): it would hold the item's gates for good. A policy never registered may be named
    (registered later, it gates the item)."""
    policy_id = payload.get(POLICY_FIELD) if isinstance(payload, dict) else None
    if not isinstance(policy_id, str) or not policy_id:
        return
    _anchor(session, [tenant, ALL_TENANTS], policy_id, exclusive=False)
    rows = [row for owner in (tenant, ALL_TENANTS) if (row := _latest(session, owner, policy_id)) is not None]
    if rows and all(row.body.get(RETIRED) for row in rows):
        raise InvalidInput(
            f"policy {policy_id!r} is retired; name a live policy (or register it again)",
            details=[{"path": f"payload.{POLICY_FIELD}", "message": f"{policy_id!r} is retired"}],
        )


def operators_live(session: Session, policy_id: str) -> bool:
    """Whether the operators' policy of this id is live, held so until the transaction ends (a
    retire waits for it; see :func:`_anchor`)."""
    _anchor(session, [ALL_TENANTS], policy_id, exclusive=False)
    return live_for(session, ALL_TENANTS, policy_id) is not None


def _anchor(session: Session, owners: list[str], policy_id: str, *, exclusive: bool) -> None:
    """Row-lock the first version of each owner's policy of this id, a row no write ever changes:
    retiring takes it exclusively, naming the policy (an item, a type) shares it, so a retire and
    a use of the policy happen one after the other and each sees the other's outcome. (SQLite runs
    one writer at a time: no lock is needed there, and none is taken.)"""
    query = select(PolicyRow.tenant).where(
        PolicyRow.tenant.in_(owners), PolicyRow.id == policy_id, PolicyRow.version == 1
    )
    session.execute(query.with_for_update(read=not exclusive))


def listed(session: Session, principal: Principal) -> list[PolicyRead]:
    """The live version of every policy the principal sees: its tenant's and the operators'."""
    require(principal, Scope.policies_read)
    query = select(PolicyRow).where(PolicyRow.is_latest == true())
    if not principal.all_tenants:
        query = query.where(PolicyRow.tenant.in_([principal.tenant, ALL_TENANTS]))
    rows = session.scalars(query.order_by(PolicyRow.tenant, PolicyRow.id)).all()
    return [read(r) for r in rows]


def detail(session: Session, principal: Principal, policy_id: str, version: int | None) -> PolicyRead:
    """A policy the principal sees, its live version or the one asked for; another tenant's is a 404."""
    require(principal, Scope.policies_read)
    owners = [ALL_TENANTS] if principal.all_tenants else [principal.tenant, ALL_TENANTS]
    for owner in owners:
        query = select(PolicyRow).where(PolicyRow.tenant == owner, PolicyRow.id == policy_id)
        query = query.where(PolicyRow.version == version) if version is not None else query.where(PolicyRow.is_latest)
        row = session.scalar(query)
        if row is not None:
            return read(row)
    if principal.all_tenants:
        # An operator reads any tenant's policy: the newest registration of the id, whoever owns it.
        query = select(PolicyRow).where(PolicyRow.id == policy_id)
        query = query.where(PolicyRow.version == version) if version is not None else query.where(PolicyRow.is_latest)
        row = session.scalars(query.order_by(PolicyRow.created_at.desc())).first()
        if row is not None:
            return read(row)
    suffix = f" version {version}" if version is not None else ""
    raise NotFound(f"no policy {policy_id!r}{suffix}")


def policy_id_of(item: WorkItem) -> str | None:
    """The policy an item names (``approvalPolicyId`` in its payload), if any."""
    value = (item.payload or {}).get(POLICY_FIELD)
    return value if isinstance(value, str) and value else None


def live_for(session: Session, tenant: str, policy_id: str) -> tuple[PolicyRow, PolicySpec] | None:
    """The live version of a policy as an item of ``tenant`` sees it: its tenant's, else the
    operators'; a retired one is none."""
    for owner in (tenant, ALL_TENANTS):
        row = _latest(session, owner, policy_id)
        # A retired policy of the tenant's own no longer overrides the operators' of the same id.
        if row is not None and not row.body.get(RETIRED):
            return row, PolicySpec.model_validate(row.body)
    return None


def read(row: PolicyRow) -> PolicyRead:
    return PolicyRead.model_validate(
        {
            **row.body,
            "tenant": row.tenant,
            "version": row.version,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
    )


def _latest(session: Session, tenant: str, policy_id: str, *, lock: bool = False) -> PolicyRow | None:
    query = select(PolicyRow).where(
        PolicyRow.tenant == tenant, PolicyRow.id == policy_id, PolicyRow.is_latest == true()
    )
    return session.scalar(query.with_for_update() if lock else query)


def _count(session: Session, tenant: str) -> int:
    return len(session.scalars(select(PolicyRow.id).where(PolicyRow.tenant == tenant, PolicyRow.is_latest)).all())


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
