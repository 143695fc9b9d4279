"""``/api/v1/work-items``: create, read, list, update, delete; transitions, claims, history."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from models.principal import Scope
from models.work_api import (
    PARTY_PATTERN,
    AllowedTransitions,
    ClaimRequest,
    CompleteRequest,
    EventRead,
    FailRequest,
    HeartbeatRequest,
    LeaseRequest,
    ReleaseRequest,
    TransitionRequest,
    WorkItemCreate,
    WorkItemPage,
    WorkItemRead,
    WorkItemUpdate,
    no_null,
)
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring, mark_live, unit_of_work
from orchestrator.api.errors import responses
from orchestrator.errors import InvalidInput
from orchestrator.sagas import item_compensation
from orchestrator.service.wiring import Wiring
from orchestrator.work import audit, claims, items, transitions, views
from orchestrator.work.access import require, tenant_for_write

router = APIRouter(prefix="/api/v1/work-items", tags=["work items"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
AUTH = (401, 403)
ItemId = Annotated[str, Path(description="The work item's id.")]
# Cursors are opaque: only the next_cursor of an earlier page is valid (anything else is a 422).
Cursor = Annotated[
    str | None,
    Query(description="Opaque: the next_cursor of the previous page, unchanged; left out: the first page."),
]
# The party patterns are only in the schema: views.parse_party says what is wrong in words.
# What If-Match may carry: "*", or the item's version, bare, quoted or weak (W/"3").
IF_MATCH = r'^(\*|[0-9]+|"[0-9]+"|W/"[0-9]+")$'


def if_match_schema(schema: dict[str, Any]) -> None:
    # The pattern only in the schema: parse_if_match says what is wrong in words. And no null: a header
    # is absent or a string.
    no_null(schema)
    schema["pattern"] = IF_MATCH


@router.post("", status_code=201, response_model=WorkItemRead, responses=responses(*AUTH, 400, 409, 413, 422))
def create_work_item(
    body: WorkItemCreate,
    response: Response,
    wiring: WiringDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Same as idempotence_key in the body (when both are sent they must be equal).",
        ),
    ] = None,
) -> WorkItemRead:
    """Create a work item (201). A retry with the same idempotence key and body returns the first
    item (200); the same key with another body is a 409."""
    if idempotency_key is not None:
        if body.idempotence_key is not None and body.idempotence_key != idempotency_key:
            raise InvalidInput(
                "the Idempotency-Key header and idempotence_key in the body differ",
                details=[{"path": "idempotence_key", "message": "differs from the header"}],
            )
        body = body.model_copy(update={"idempotence_key": idempotency_key})
    if body.compensation is not None:
        # After the checks of who may write where, as create_item makes them, so a caller who may
        # not create the item learns nothing from a plan's checks.
        require(principal, Scope.work_write)
        item_compensation.check_item_plan(wiring.sessions, tenant_for_write(principal, body.tenant), body.compensation)
    item, created = items.create_item(
        wiring.sessions, principal, body, max_payload_bytes=wiring.settings.work_item_max_payload_bytes
    )
    if not created:
        response.status_code = 200
    return item


@router.get("", response_model=WorkItemPage, responses=responses(*AUTH, 422))
def list_work_items(
    wiring: WiringDep,
    principal: PrincipalDep,
    type: Annotated[str | None, Query(description="Only items of this work-item type.")] = None,
    status: Annotated[str | None, Query(description="Only items in this status.")] = None,
    label: Annotated[str | None, Query(description="Only items that carry this label.")] = None,
    assignee: Annotated[
        str | None,
        Query(
            json_schema_extra={"pattern": PARTY_PATTERN},
            description="Only items assigned to this party: user:<id> or agent:<id>.",
        ),
    ] = None,
    reporter: Annotated[
        str | None,
        Query(
            json_schema_extra={"pattern": PARTY_PATTERN},
            description="Only items reported by this party: user:<id> or agent:<id>.",
        ),
    ] = None,
    parent_id: Annotated[str | None, Query(description="Only the children of this item.")] = None,
    tenant: Annotated[
        str | None, Query(description="Only this tenant's items (another tenant's is a 403 unless all-tenant).")
    ] = None,
    saga_id: Annotated[str | None, Query(description="Items a saga's steps wait on.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most items per page.")] = 50,
    cursor: Cursor = None,
) -> WorkItemPage:
    """Work items, newest first; deleted ones are left out."""
    with wiring.sessions() as session:
        return views.list_items(
            session,
            principal,
            type=type,
            status=status,
            label=label,
            assignee=assignee,
            reporter=reporter,
            parent_id=parent_id,
            tenant=tenant,
            saga_id=saga_id,
            limit=limit,
            cursor=cursor,
        )


@router.get("/{item_id}", response_model=WorkItemRead, responses=responses(*AUTH, 404))
def get_work_item(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> WorkItemRead:
    """One work item; a deleted one, or another tenant's, is a 404."""
    with wiring.sessions() as session:
        return views.get_item(session, principal, item_id)


@router.patch("/{item_id}", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 413, 422))
def update_work_item(
    item_id: ItemId,
    body: WorkItemUpdate,
    wiring: WiringDep,
    principal: PrincipalDep,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            json_schema_extra=if_match_schema,
            description='Update only if the item is at this version: 3, "3" or W/"3"; * : any version.',
        ),
    ] = None,
) -> WorkItemRead:
    """Change fields. With ``version`` in the body (or ``If-Match: <version>``) the update applies
    only if the item is still at that version (409 otherwise)."""
    with unit_of_work(wiring) as session:
        if body.compensation is not None:
            require(principal, Scope.work_write)
            current = views.load_item(session, principal, item_id)
            run_steps = item_compensation.run_steps_of(session, current)
            item_compensation.check_plan(session, current.tenant, body.compensation, run_steps=run_steps)
        return items.update_item(
            session,
            principal,
            item_id,
            body,
            if_match=parse_if_match(if_match),
            max_payload_bytes=wiring.settings.work_item_max_payload_bytes,
        )


@router.delete("/{item_id}", status_code=204, responses=responses(*AUTH, 404))
def delete_work_item(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> Response:
    """Soft delete: the item leaves lists and queues; its history stays."""
    with unit_of_work(wiring) as session:
        items.delete_item(session, principal, item_id)
    return Response(status_code=204)


@router.post("/{item_id}/transition", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def transition_work_item(
    item_id: ItemId, body: TransitionRequest, wiring: WiringDep, principal: PrincipalDep
) -> WorkItemRead:
    """Move the item to ``to``. A move its lifecycle does not allow is a 409 naming the allowed ones."""
    with unit_of_work(wiring) as session:
        return transitions.transition(session, principal, item_id, body.to, reason=body.reason, version=body.version)


@router.get("/{item_id}/transitions", response_model=AllowedTransitions, responses=responses(*AUTH, 404))
def allowed_transitions(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> AllowedTransitions:
    """The statuses the item may move to next, and which named actions apply now."""
    with wiring.sessions() as session:
        return transitions.allowed(session, principal, item_id)


@router.get("/{item_id}/history", response_model=list[EventRead], responses=responses(*AUTH, 404))
def work_item_history(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[EventRead]:
    """The audit trail: every transition, claim, release, lease expiry and assignment, in order."""
    with wiring.sessions() as session:
        views.get_item(session, principal, item_id)
        return [EventRead.model_validate(e) for e in audit.history(session, item_id)]


@router.post("/{item_id}/claim", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409))
def claim_work_item(
    item_id: ItemId, wiring: WiringDep, principal: PrincipalDep, body: ClaimRequest | None = None
) -> WorkItemRead:
    """Claim the item exclusively. An agent's claim is a lease: heartbeat before it lapses."""
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        return claims.claim(
            session,
            principal,
            item_id,
            ttl_s=body.ttl_s if body else None,
            default_ttl_s=wiring.settings.work_lease_ttl_s,
            default_stall_after_s=wiring.settings.work_stall_after_s,
        )


@router.post("/{item_id}/heartbeat", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def heartbeat_work_item(
    item_id: ItemId, body: HeartbeatRequest, wiring: WiringDep, principal: PrincipalDep
) -> WorkItemRead:
    """Extend the caller's lease by the claim's own TTL, and report progress. A lost or stale lease is a 409."""
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        return claims.heartbeat(
            session,
            principal,
            item_id,
            body.lease_epoch,
            ttl_s=body.ttl_s,
            default_ttl_s=wiring.settings.work_lease_ttl_s,
            progress=body.progress,
        )


@router.post("/{item_id}/release", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def release_work_item(
    item_id: ItemId, wiring: WiringDep, principal: PrincipalDep, body: ReleaseRequest | None = None
) -> WorkItemRead:
    """Give the item back to its queue."""
    body = body or ReleaseRequest()
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        return claims.release(session, principal, item_id, body.lease_epoch, body.reason)


@router.post("/{item_id}/start", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def start_work_item(
    item_id: ItemId, wiring: WiringDep, principal: PrincipalDep, body: LeaseRequest | None = None
) -> WorkItemRead:
    """Start the item, claiming it first if the caller does not hold it. Work already underway (its
    last holder's lease lapsed) is resumed; a retried start answers as the first did."""
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        return claims.start(
            session,
            principal,
            item_id,
            body.lease_epoch if body else None,
            default_ttl_s=wiring.settings.work_lease_ttl_s,
            default_stall_after_s=wiring.settings.work_stall_after_s,
        )


@router.post("/{item_id}/complete", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def complete_work_item(
    item_id: ItemId, body: CompleteRequest, wiring: WiringDep, principal: PrincipalDep
) -> WorkItemRead:
    """Complete the held item with a result; its lifecycle says where that takes it. A retry of the
    same call (same claim, same result) answers as the first did; another result is a 409.
    A ``cost`` is added to the calling agent's spend in its budget's current period (agents in the
    registry), once: a retry adds nothing."""
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        item = claims.complete(
            session,
            principal,
            item_id,
            body.lease_epoch,
            body.result,
            max_result_bytes=wiring.settings.work_item_max_payload_bytes,
            cost=body.cost,
        )
        return item


@router.post("/{item_id}/fail", response_model=WorkItemRead, responses=responses(*AUTH, 404, 409, 422))
def fail_work_item(item_id: ItemId, body: FailRequest, wiring: WiringDep, principal: PrincipalDep) -> WorkItemRead:
    """Give up on the held item, with a reason. A retry with the same claim and reason answers as the first did.
    A ``cost`` is added to the calling agent's spend, as with complete."""
    mark_live(wiring, principal)
    with unit_of_work(wiring) as session:
        return claims.fail(session, principal, item_id, body.lease_epoch, body.reason, cost=body.cost)


def parse_if_match(if_match: str | None) -> int | None:
    """The version an If-Match header names; None for none or ``*``."""
    if if_match is None:
        return None
    # Matched whole, as the OpenAPI's pattern says (str.isdigit would pass "²", which int() refuses);
    # no surrounding whitespace to strip: HTTP servers take it off a header value before the app.
    match = re.fullmatch(r'\*|W/"([0-9]+)"|"([0-9]+)"|([0-9]+)', if_match)
    if match is None:
        raise InvalidInput(
            "If-Match must carry a version number", details=[{"path": "If-Match", "message": "not a number"}]
        )
    digits = next((group for group in match.groups() if group is not None), None)
    return None if digits is None else int(digits)  # "*" (RFC 9110): any current version will do
