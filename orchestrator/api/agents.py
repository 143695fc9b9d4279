"""``/api/v1/agents``: the agent registry (register, list, read, update, deregister, heartbeat).

Every route is tenant-scoped like the rest: a token sees its tenant's own agents and the
operators' (``*``) ones, which serve every tenant; another tenant's agent is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from models.agent_api import AgentCreate, AgentPage, AgentRead, AgentUpdate
from models.agents import AgentType, Liveness
from models.base import utcnow
from orchestrator.agents import heartbeats, listing, registry
from orchestrator.agents.liveness import Thresholds
from orchestrator.agents.views import read_agents
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.api.work_items import Cursor, if_match_schema, parse_if_match
from orchestrator.service.wiring import Wiring

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
AgentId = Annotated[str, Path(description="The agent's id (its tokens' principal id).")]
TenantHint = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="The agent's tenant (* for an operator's): needed only by an all-tenant token, where the "
        "id is registered in several tenants (a 409 otherwise). Left out: wherever the token sees it.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        json_schema_extra=if_match_schema,
        description='Update only if the agent is at this version: 3, "3" or W/"3"; * : any version.',
    ),
]
AUTH = (401, 403)


@router.post(
    "",
    status_code=201,
    response_model=AgentRead,
    responses={
        200: {"model": AgentRead, "description": "The same spec, registered before: nothing changed"},
        **responses(*AUTH, 409, 422),
    },
)
def register_agent(body: AgentCreate, response: Response, wiring: WiringDep, principal: PrincipalDep) -> AgentRead:
    """Register an agent (201). The same spec again answers 200 and changes nothing; another spec
    under a registered id is a 409 (change it with PATCH). An operator's token (``agents:write``)
    registers any agent of its tenant (an all-tenant token: of any tenant, ``*`` by default); an
    agent's own token (``agents:register``) registers that agent only, in its tenant, declaring
    only capabilities its token grants (if the token lists any), and is live from then on."""
    thresholds = Thresholds.of(wiring.settings)
    with wiring.sessions.begin() as session:
        row, created = registry.register(session, principal, body)
        session.flush()
        view = read_agents(session, [row], utcnow(), thresholds)[0]
    if not created:
        response.status_code = 200
    return view


@router.get("", response_model=AgentPage, responses=responses(*AUTH, 422))
def list_agents(
    wiring: WiringDep,
    principal: PrincipalDep,
    agent_type: Annotated[AgentType | None, Query(description="Only agents of this taxonomy class.")] = None,
    capability: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Only agents that declare this capability.")
    ] = None,
    liveness: Annotated[
        Liveness | None, Query(description="Only agents that are live, stale or dead now (see WORKYARD_AGENT_*).")
    ] = None,
    tenant: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="Only this tenant's agents (* : the operators'); another tenant's is a 403 unless all-tenant.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most agents per page.")] = 50,
    cursor: Cursor = None,
) -> AgentPage:
    """Registered agents in the order of tenant and id: each with its spec, liveness, last
    heartbeat, load (open items it holds a live claim on), capacity and spend in its budget's
    current period. Deregistered agents are left out."""
    with wiring.sessions() as session:
        return listing.list_agents(
            session,
            principal,
            thresholds=Thresholds.of(wiring.settings),
            agent_type=agent_type,
            capability=capability,
            liveness=liveness,
            tenant=tenant,
            limit=limit,
            cursor=cursor,
        )


@router.get("/{agent_id}", response_model=AgentRead, responses=responses(*AUTH, 404, 409, 422))
def get_agent(agent_id: AgentId, wiring: WiringDep, principal: PrincipalDep, tenant: TenantHint = None) -> AgentRead:
    """One registered agent; a deregistered one, or another tenant's, is a 404. An agent may read
    itself without ``agents:read``."""
    with wiring.sessions() as session:
        return listing.get_agent(session, principal, agent_id, thresholds=Thresholds.of(wiring.settings), tenant=tenant)


@router.patch("/{agent_id}", response_model=AgentRead, responses=responses(*AUTH, 404, 409, 422))
def update_agent(
    agent_id: AgentId,
    body: AgentUpdate,
    wiring: WiringDep,
    principal: PrincipalDep,
    if_match: IfMatch = None,
    tenant: TenantHint = None,
) -> AgentRead:
    """Change spec fields, each replacing the old value. With ``version`` in the body (or
    ``If-Match: <version>``) only if the agent is still at that version (409 otherwise). The
    same rules as registering: an agent changes only itself, within its token's capabilities."""
    with wiring.sessions.begin() as session:
        row = registry.update(session, principal, agent_id, body, tenant=tenant, if_match=parse_if_match(if_match))
        session.flush()
        return read_agents(session, [row], utcnow(), Thresholds.of(wiring.settings))[0]


@router.delete("/{agent_id}", status_code=204, responses=responses(*AUTH, 404, 409, 422))
def deregister_agent(
    agent_id: AgentId, wiring: WiringDep, principal: PrincipalDep, tenant: TenantHint = None
) -> Response:
    """Deregister the agent: it is listed and routed to no more (its claims stay until they end or
    lapse). Registering it again later starts afresh. An agent may deregister itself."""
    with wiring.sessions.begin() as session:
        registry.deregister(session, principal, agent_id, tenant=tenant)
    return Response(status_code=204)


@router.post("/{agent_id}/heartbeat", response_model=AgentRead, responses=responses(*AUTH, 404, 409, 422))
def agent_heartbeat(
    agent_id: AgentId, wiring: WiringDep, principal: PrincipalDep, tenant: TenantHint = None
) -> AgentRead:
    """The agent is alive: it counts as live for ``WORKYARD_AGENT_STALE_AFTER_S`` from now. Sent by
    the agent itself (or by a token with ``agents:write`` for its tenant). Any claim, heartbeat,
    start, complete or fail the agent makes marks it live too."""
    with wiring.sessions.begin() as session:
        row = heartbeats.heartbeat(session, principal, agent_id, tenant=tenant, source="http")
        session.flush()
        return read_agents(session, [row], utcnow(), Thresholds.of(wiring.settings))[0]
