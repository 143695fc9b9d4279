"""A tenant's goal registry: the goals work items name in ``relatedGoals`` (spec §2, §13)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, Scope
from models.trace_tables import GoalRow
from models.traceability import GoalCreate, GoalRead, GoalUpdate
from orchestrator.errors import Conflict, InvalidInput, NotFound
from orchestrator.work.access import require, tenant_for_write


def view(row: GoalRow) -> GoalRead:
    return GoalRead(
        code=row.code,
        tenant=row.tenant,
        title=row.title,
        description=row.description,
        status=row.status,  # only active or retired are written
        created_by=row.created_by,
        created_at=row.created_at,
    )


def register(session: Session, principal: Principal, body: GoalCreate) -> GoalRead:
    """Add a goal to the tenant's registry; a code the tenant registered before is a 409 (codes
    are names items keep: one never changes meaning)."""
    require(principal, Scope.work_write)
    tenant = tenant_for_write(principal, body.tenant)
    if tenant == ALL_TENANTS:
        # Work items name goals of their own tenant: a goal of every tenant would be no one's.
        raise InvalidInput(
            "a goal belongs to one tenant; name it in tenant",
            details=[{"path": "tenant", "message": "a tenant, not '*'"}],
        )
    conflict = Conflict(
        f"goal {body.code} is registered already in tenant {tenant}",
        details=[{"path": "code", "message": "already registered"}],
    )
    if session.get(GoalRow, (tenant, body.code)) is not None:
        raise conflict
    row = GoalRow(
        tenant=tenant,
        code=body.code,
        title=body.title,
        description=body.description,
        status=body.status,
        created_by=principal.ref,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # registered concurrently
        raise conflict from None
    return view(row)


def listed(session: Session, principal: Principal, status: str | None) -> list[GoalRead]:
    """The goals the principal's tenant registered (every tenant's for an all-tenant token), by code."""
    require(principal, Scope.work_read)
    query = select(GoalRow).order_by(GoalRow.tenant, GoalRow.code)
    if not principal.all_tenants:
        query = query.where(GoalRow.tenant == principal.tenant)
    if status is not None:
        query = query.where(GoalRow.status == status)
    return [view(row) for row in session.scalars(query)]


def one(session: Session, principal: Principal, code: str, tenant: str | None = None) -> GoalRead:
    """One goal of the principal's tenant; another tenant's is a 404, as a missing one."""
    require(principal, Scope.work_read)
    return view(_found(session, principal, code, tenant))


def update(session: Session, principal: Principal, code: str, body: GoalUpdate, tenant: str | None = None) -> GoalRead:
    """Change a goal's words or status (retire it, or bring it back); its code stays."""
    require(principal, Scope.work_write)
    row = _found(session, principal, code, tenant, lock=True)
    for field in body.model_fields_set:
        value = getattr(body, field)
        if value is None:
            raise InvalidInput(f"{field} cannot be null", details=[{"path": field, "message": "leave it out instead"}])
        setattr(row, field, value)
    session.flush()
    return view(row)


def _found(session: Session, principal: Principal, code: str, tenant: str | None, *, lock: bool = False) -> GoalRow:
    """The goal of this code: of the token's tenant; for an all-tenant token, of ``tenant``, or of
    the one tenant that has the code (several: a 422 asking which, never one picked for it)."""
    if principal.all_tenants and tenant is None:
        owners = session.scalars(select(GoalRow.tenant).where(GoalRow.code == code).order_by(GoalRow.tenant)).all()
        if len(owners) > 1:
            raise InvalidInput(
                f"goal {code} is registered in {len(owners)} tenants: name one in tenant",
                details=[{"path": "tenant", "message": f"one of {', '.join(owners)}"}],
            )
        tenant = owners[0] if owners else None
    owner = tenant if principal.all_tenants else tenant_for_write(principal, tenant)
    query = select(GoalRow).where(GoalRow.code == code, GoalRow.tenant == owner)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no goal {code!r}")
    return row
