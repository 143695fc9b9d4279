"""``/api/v1/goals``: a tenant's goal registry (the codes work items name in ``relatedGoals``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from models.item_plans import GOAL_PATTERN
from models.principal import Principal, Scope
from models.traceability import GoalCreate, GoalRead, GoalUpdate
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.api.params import tenant_query
from orchestrator.service.wiring import Wiring
from orchestrator.traceability import goals

router = APIRouter(prefix="/api/v1/goals", tags=["traceability"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
Tenant = Annotated[
    str | None,
    tenant_query(
        "Whose goal, for an all-tenant token (needed when more than one tenant has the code); "
        "a tenant's token: its own."
    ),
]
CodePath = Annotated[
    str, Path(description="The goal's code, such as GOAL-FINSERV-001.", max_length=96, pattern=GOAL_PATTERN)
]


@router.post("", status_code=201, response_model=GoalRead, responses=responses(401, 403, 409, 422))
def create_goal(
    body: GoalCreate, wiring: WiringDep, principal: Annotated[Principal, needs(Scope.work_write)]
) -> GoalRead:
    """Register a goal in the token's tenant. A code the tenant registered before is a 409: items
    name goals by code, so a code keeps its meaning."""
    with wiring.sessions.begin() as session:
        return goals.register(session, principal, body)


@router.get("", response_model=list[GoalRead], responses=responses(401, 403, 422))
def list_goals(
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.work_read)],
    status: Annotated[
        Literal["active", "retired"] | None, Query(description="Only goals in this status (default: all).")
    ] = None,
) -> list[GoalRead]:
    """The tenant's goals, by code."""
    with wiring.sessions() as session:
        return goals.listed(session, principal, status)


@router.get("/{code}", response_model=GoalRead, responses=responses(401, 403, 404, 422))
def one_goal(
    code: CodePath, wiring: WiringDep, principal: Annotated[Principal, needs(Scope.work_read)], tenant: Tenant = None
) -> GoalRead:
    """One goal of the tenant; another tenant's is a 404, as a missing one."""
    with wiring.sessions() as session:
        return goals.one(session, principal, code, tenant)


@router.patch("/{code}", response_model=GoalRead, responses=responses(401, 403, 404, 422))
def update_goal(
    code: CodePath,
    body: GoalUpdate,
    wiring: WiringDep,
    principal: Annotated[Principal, needs(Scope.work_write)],
    tenant: Tenant = None,
) -> GoalRead:
    """Change a goal's title or description, or retire it (``status``: retired; validation then
    no longer asks for work that serves it) or bring it back. Its code never changes."""
    with wiring.sessions.begin() as session:
        return goals.update(session, principal, code, body, tenant)
