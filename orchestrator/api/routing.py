"""``/api/v1/routing-rules``: register (a new version per registration), read, list and disable
routing rules; and per work item, its routing decisions and a manual reroute.

A tenant's token sees its tenant's rules and the operators' (tenant ``*``) and changes only its
own; another tenant's rule is a 404. An all-tenant token names the tenant with ``?tenant=``
(default ``*``, the operators' rules).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from models.routing import (
    RerouteRequest,
    RerouteResult,
    RoutingDecisionRead,
    RoutingRuleCreate,
    RoutingRuleDetail,
    RoutingRuleList,
    RoutingRuleRead,
)
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring, unit_of_work
from orchestrator.api.errors import responses
from orchestrator.api.params import tenant_query
from orchestrator.routing import decisions, rules, triggers
from orchestrator.service.wiring import Wiring
from orchestrator.work import views

router = APIRouter(prefix="/api/v1/routing-rules", tags=["routing"])
items_router = APIRouter(prefix="/api/v1/work-items", tags=["routing"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
RuleId = Annotated[str, Path(description="The rule's id.")]
ItemId = Annotated[str, Path(description="The work item's id.")]
Tenant = Annotated[
    str | None,
    tenant_query(
        "Whose rule: for an all-tenant token, the tenant (default '*', the operators' rules); a "
        "tenant's token may name its own tenant or '*'."
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=RoutingRuleRead,
    responses={
        200: {"model": RoutingRuleRead, "description": "The live version's definition again: nothing added"},
        **responses(401, 403, 409, 422),
    },
)
def create_routing_rule(
    body: RoutingRuleCreate, response: Response, wiring: WiringDep, principal: PrincipalDep
) -> RoutingRuleRead:
    """Register a routing rule (201), or a new version of the rule with this id (201, version + 1);
    the live version's definition again adds nothing (200). Needs routing:write. A group the
    rule's escalation or fallback offers items to must be one some principal is in (422)."""
    with wiring.sessions.begin() as session:
        rule, created = rules.register(session, principal, body)
    if not created:
        response.status_code = 200
    return rule


@router.get("", response_model=RoutingRuleList, responses=responses(401, 403, 422))
def list_routing_rules(wiring: WiringDep, principal: PrincipalDep, tenant: Tenant = None) -> RoutingRuleList:
    """The live version of every rule the token sees, in the order the router tries them (highest
    priority first, a tenant's own before the operators'); disabled ones included."""
    with wiring.sessions() as session:
        return RoutingRuleList(rules=rules.listed(session, principal, tenant))


@router.get("/{rule_id}", response_model=RoutingRuleDetail, responses=responses(401, 403, 404, 422))
def get_routing_rule(
    rule_id: RuleId, wiring: WiringDep, principal: PrincipalDep, tenant: Tenant = None
) -> RoutingRuleDetail:
    """A rule's live version and all its versions. A tenant's token finds its own rule of this id,
    else the operators'."""
    with wiring.sessions() as session:
        return rules.detail(session, principal, rule_id, tenant)


@router.delete("/{rule_id}", status_code=204, responses=responses(401, 403, 404, 422))
def delete_routing_rule(rule_id: RuleId, wiring: WiringDep, principal: PrincipalDep, tenant: Tenant = None) -> Response:
    """Disable a rule: a new version that is never applied (its versions stay readable; register
    it again to enable it). Needs routing:write; an operator's rule takes an all-tenant token."""
    with wiring.sessions.begin() as session:
        rules.disable(session, principal, rule_id, tenant)
    return Response(status_code=204)


@items_router.get("/{item_id}/routing", response_model=list[RoutingDecisionRead], responses=responses(401, 403, 404))
def work_item_routing(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[RoutingDecisionRead]:
    """The routing decisions about the item, oldest first: trigger, rule, reason, every candidate's
    verdict and the chosen assignee."""
    with wiring.sessions() as session:
        views.get_item(session, principal, item_id)
        return decisions.for_item(session, item_id)


@items_router.post("/{item_id}/reroute", response_model=RerouteResult, responses=responses(401, 403, 404, 409, 422))
def reroute_work_item(
    item_id: ItemId, wiring: WiringDep, principal: PrincipalDep, body: RerouteRequest | None = None
) -> RerouteResult:
    """Evaluate the item's routing rules again now (whatever their reroute_on). An agent other
    than the one holding the item takes it over: the holder's claim is released and its lease
    epoch moves on (its calls are refused with 409); the new assignee claims it itself. Needs
    routing:write; a closed item is a 409."""
    with unit_of_work(wiring) as session:
        return triggers.reroute(session, principal, item_id, body or RerouteRequest())
