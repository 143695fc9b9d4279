"""Next work and work queues for the calling user or agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from models.lifecycles import LifecycleName
from models.principal import PrincipalType
from models.work_api import ClaimRequest, NextWork, WorkItemPage, WorkItemRead, no_null
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring, mark_live
from orchestrator.api.errors import responses
from orchestrator.service.wiring import Wiring
from orchestrator.work import next_work, queues

router = APIRouter(prefix="/api/v1", tags=["queues"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
# Cursors are opaque: only the next_cursor of an earlier page is valid (anything else is a 422).
Cursor = Annotated[
    str | None,
    Query(description="Opaque: the next_cursor of the previous page, unchanged; left out: the first page."),
]
Limit = Annotated[int, Query(ge=1, le=500, description="The most items per page.")]


@router.get("/works/next-work", response_model=NextWork, responses=responses(401, 403, 422))
def get_next_work(
    wiring: WiringDep,
    principal: PrincipalDep,
    assignee_type: Annotated[
        PrincipalType, Query(alias="assigneeType", description="Whether the work is for a user or an agent.")
    ],
    assignee_id: Annotated[
        str, Query(alias="assigneeId", min_length=1, max_length=255, description="The user's or agent's id.")
    ],
) -> NextWork:
    """The next item for a user or an agent, by the next-work doc's four rules."""
    with wiring.sessions() as session:
        return next_work.next_work(session, principal, assignee_type, assignee_id)


@router.get("/queues/available", response_model=WorkItemPage, responses=responses(401, 403, 422))
def available_queue(
    wiring: WiringDep,
    principal: PrincipalDep,
    # No null in these schemas: a query parameter is absent or a string.
    type: Annotated[
        str | None,
        Query(min_length=1, max_length=64, json_schema_extra=no_null, description="Only items of this type."),
    ] = None,
    label: Annotated[
        str | None,
        Query(min_length=1, max_length=100, json_schema_extra=no_null, description="Only items that carry this label."),
    ] = None,
    lifecycle: Annotated[
        LifecycleName | None,
        Query(json_schema_extra=no_null, description="Only items that follow this lifecycle (a workflow's queue)."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WorkItemPage:
    """Open, unclaimed items offered or assigned to the caller: highest priority, then oldest;
    filtered by type, label and lifecycle where given (together: all of them)."""
    with wiring.sessions() as session:
        return queues.available(
            session, principal, type=type, label=label, lifecycle=lifecycle, limit=limit, cursor=cursor
        )


@router.get("/queues/claimed", response_model=WorkItemPage, responses=responses(401, 403, 422))
def claimed_queue(wiring: WiringDep, principal: PrincipalDep, limit: Limit = 50, cursor: Cursor = None) -> WorkItemPage:
    """Items the caller holds."""
    with wiring.sessions() as session:
        return queues.claimed(session, principal, limit=limit, cursor=cursor)


@router.get("/queues/lifecycles/{lifecycle}", response_model=WorkItemPage, responses=responses(401, 403, 404, 422))
def lifecycle_queue(
    lifecycle: Annotated[str, Path(description="A lifecycle's name (canonical, work, backlog, chat, step).")],
    wiring: WiringDep,
    principal: PrincipalDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WorkItemPage:
    """The caller's available items that follow one lifecycle (a workflow's queue)."""
    with wiring.sessions() as session:
        return queues.available(session, principal, lifecycle=lifecycle, limit=limit, cursor=cursor)


@router.get("/queues/groups/{group}", response_model=WorkItemPage, responses=responses(401, 403, 422))
def group_queue(
    group: Annotated[str, Path(description="The group items are offered to.")],
    wiring: WiringDep,
    principal: PrincipalDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WorkItemPage:
    """A group supervisor's view: every open item offered to the group, claimed or not."""
    with wiring.sessions() as session:
        return queues.group_view(session, principal, group, limit=limit, cursor=cursor)


@router.post(
    "/queues/claim-next",
    response_model=WorkItemRead,
    responses={**responses(401, 403, 422), 204: {"description": "Nothing to claim."}},
)
def claim_next(wiring: WiringDep, principal: PrincipalDep, body: ClaimRequest | None = None) -> WorkItemRead | Response:
    """Claim the best available item (204 when the queue is empty)."""
    mark_live(wiring, principal)
    # Concurrent calls share a claim transaction (claim_batches): one commit for several claims.
    item = wiring.claim_batcher.claim_next(
        principal,
        ttl_s=body.ttl_s if body else None,
        default_ttl_s=wiring.settings.work_lease_ttl_s,
        default_stall_after_s=wiring.settings.work_stall_after_s,
    )
    return item if item is not None else Response(status_code=204)
