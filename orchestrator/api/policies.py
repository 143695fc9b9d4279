"""``/api/v1/policies``: register (a new version per changed definition), list and read the
policies that gate work items' transitions (the work-items spec §7).

A tenant's token sees its tenant's policies and the operators' (tenant ``*``) and registers only
its own; another tenant's policy is a 404. An all-tenant token registers the operators' shared
policies (or a tenant's, naming it in ``tenant``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from models.policies import PolicyCreate, PolicyList, PolicyRead
from models.work_api import no_null
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.api.params import tenant_query
from orchestrator.service.wiring import Wiring
from orchestrator.work.gates import policies

router = APIRouter(prefix="/api/v1/policies", tags=["policies"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
PolicyIdPath = Annotated[str, Path(min_length=1, max_length=100, description="The policy's id.")]
Version = Annotated[
    int | None,
    Query(ge=1, le=2_147_483_647, json_schema_extra=no_null, description="A version; left out: the live one."),
]


@router.post(
    "",
    status_code=201,
    response_model=PolicyRead,
    responses={
        200: {"model": PolicyRead, "description": "The live version's definition again: nothing added"},
        **responses(401, 403, 409, 422),
    },
)
def create_policy(body: PolicyCreate, response: Response, wiring: WiringDep, principal: PrincipalDep) -> PolicyRead:
    """Register a policy (201), or a new version of the policy with this id (201, version + 1);
    the live version's definition again adds nothing (200). Needs policies:write."""
    with wiring.sessions.begin() as session:
        policy, created = policies.register(session, principal, body)
    if not created:
        response.status_code = 200
    return policy


@router.get("", response_model=PolicyList, responses=responses(401, 403))
def list_policies(wiring: WiringDep, principal: PrincipalDep) -> PolicyList:
    """The live version of every policy the token sees. Needs policies:read."""
    with wiring.sessions() as session:
        return PolicyList(policies=policies.listed(session, principal))


@router.get("/{policy_id}", response_model=PolicyRead, responses=responses(401, 403, 404, 422))
def get_policy(
    policy_id: PolicyIdPath, wiring: WiringDep, principal: PrincipalDep, version: Version = None
) -> PolicyRead:
    """A policy's live version, or the version asked for: the tenant's own of this id, else the
    operators'. Needs policies:read."""
    with wiring.sessions() as session:
        return policies.detail(session, principal, policy_id, version)


Tenant = Annotated[
    str | None,
    tenant_query("Whose policy, for an all-tenant token (left out: the operators'); a tenant's token: its own."),
]


@router.delete("/{policy_id}", status_code=204, responses=responses(401, 403, 404, 409, 422))
def retire_policy(
    policy_id: PolicyIdPath, wiring: WiringDep, principal: PrincipalDep, tenant: Tenant = None
) -> Response:
    """Retire a policy: a new version that gates nothing new, so no item, type or template may name
    it (its versions stay readable; registering it again brings it back). A 409 while open items or
    a work-item type still name it. Needs policies:write; an operator's policy takes an all-tenant token."""
    with wiring.sessions.begin() as session:
        policies.retire(session, principal, policy_id, tenant)
    return Response(status_code=204)
