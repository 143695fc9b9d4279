"""``/api/v1/work-item-types``: the types registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from models.principal import Scope
from models.work_api import WorkItemTypeCreate, WorkItemTypeRead
from models.work_item_types import WorkItemType
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import Forbidden, InvalidInput, NotFound
from orchestrator.service.wiring import Wiring
from orchestrator.work.access import require
from orchestrator.work.types import get_type, list_types, register_type

router = APIRouter(prefix="/api/v1/work-item-types", tags=["work-item types"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]


@router.post(
    "",
    status_code=201,
    response_model=WorkItemTypeRead,
    responses={
        # It answered 200 undocumented before (found by make fuzz); documented as POST /templates's is.
        200: {"model": WorkItemTypeRead, "description": "The same definition, registered before"},
        **responses(401, 403, 409, 422),
    },
)
def create_type(
    body: WorkItemTypeCreate, response: Response, wiring: WiringDep, principal: PrincipalDep
) -> WorkItemTypeRead:
    """Register a type with its JSON Schema. The same definition again answers 200; another one
    under a registered name is a 409 (types are immutable). Types are shared by every tenant, so
    registering one is an operator's act: it needs an all-tenant token with ``types:write``."""
    require(principal, Scope.types_write)
    if not principal.all_tenants:
        raise Forbidden(
            "work-item types are shared by every tenant: registering one needs an operator's all-tenant token",
            details=[{"path": "tenant", "message": f"{principal.tenant} is one tenant; needs *"}],
        )
    with wiring.sessions.begin() as session:
        item_type, created = register_type(session, body, principal)
    if not created:
        response.status_code = 200
    return type_view(item_type)


@router.get("", response_model=list[WorkItemTypeRead], responses=responses(401, 403))
def all_types(wiring: WiringDep, principal: PrincipalDep) -> list[WorkItemTypeRead]:
    """Every work-item type: the built-in ones, then the registered ones by name."""
    require(principal, Scope.work_read)
    with wiring.sessions() as session:
        return [type_view(t) for t in list_types(session)]


@router.get("/{name}", response_model=WorkItemTypeRead, responses=responses(401, 403, 404))
def one_type(
    name: Annotated[str, Path(description="The type's name.")], wiring: WiringDep, principal: PrincipalDep
) -> WorkItemTypeRead:
    """One work-item type, built in or registered; an unknown name is a 404."""
    require(principal, Scope.work_read)
    with wiring.sessions() as session:
        try:
            return type_view(get_type(session, name))
        except InvalidInput as exc:
            raise NotFound(exc.message) from exc


def type_view(item_type: WorkItemType) -> WorkItemTypeRead:
    """A type as the API (and the MCP resources) show it."""
    return WorkItemTypeRead(
        name=item_type.name,
        description=item_type.description,
        json_schema=item_type.schema,
        lifecycle=item_type.lifecycle,
        builtin=item_type.builtin,
        capabilities=list(item_type.capabilities),
        risk_level=item_type.risk_level,
        approval_policy_id=item_type.approval_policy_id,
        hitl=item_type.hitl,
    )
