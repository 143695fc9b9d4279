"""``/api/v1/dead-letters``: messages nobody could act on, for an operator to read, replay and purge.

A dead letter belongs to no tenant (a message that could not be read names no tenant one could
trust, and may hold any tenant's data): every route needs an all-tenant token with the
``dead-letters:manage`` scope (or ``admin``); a tenant's token is a 403.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from models.base import utcnow
from models.dead_letter_api import DeadLetterPage, DeadLetterPurge, DeadLetterPurged, DeadLetterRead, DeadLetterReplayed
from models.principal import Principal, Scope
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring, unit_of_work
from orchestrator.api.errors import responses
from orchestrator.errors import Forbidden
from orchestrator.sagas import dead_letters
from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)


async def operator(principal: Annotated[Principal, needs(Scope.dead_letters)]) -> Principal:
    if not principal.all_tenants:
        raise Forbidden(
            "dead letters belong to no tenant: only an all-tenant token (tenant *) may read or act on them",
            details=[{"path": "tenant", "message": "needs an all-tenant token"}],
        )
    return principal


router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
OperatorDep = Annotated[Principal, Depends(operator)]
# Bounded to a BIGINT: a larger id would be a 500 on PostgreSQL.
LetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The dead letter's id.")]


@router.get("", response_model=DeadLetterPage, responses=responses(401, 403, 422))
def list_dead_letters(
    wiring: WiringDep,
    principal: OperatorDep,
    source: Annotated[str | None, Query(max_length=200, description="Only those from this queue.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most per page.")] = 50,
    cursor: Annotated[
        str | None, Query(description="Opaque: the next_cursor of the previous page; left out: the first page.")
    ] = None,
) -> DeadLetterPage:
    """Dead letters, newest first: where each came from, why, the start of its body, and
    whether it can be replayed."""
    with wiring.sessions() as session:
        return dead_letters.list_dead_letters(session, source=source, limit=limit, cursor=cursor)


@router.post("/purge", response_model=DeadLetterPurged, responses=responses(401, 403, 409, 422))
def purge_dead_letters(body: DeadLetterPurge, wiring: WiringDep, principal: OperatorDep) -> DeadLetterPurged:
    """Delete every dead letter a filter matches (source, text in the reason, received before;
    none given: every one). By default a dry run that answers the count; to delete, send
    ``dry_run: false`` with ``expect`` set to that count (another count by then: 409, nothing
    is deleted)."""
    with wiring.sessions.begin() as session:
        purged = dead_letters.purge(session, body)
    if not purged.dry_run:
        log.info("%s purged %d dead letter(s) matching %s", principal.ref, purged.deleted, body.filter)
    return purged


@router.get("/{letter_id}", response_model=DeadLetterRead, responses=responses(401, 403, 404, 422))
def get_dead_letter(letter_id: LetterId, wiring: WiringDep, principal: OperatorDep) -> DeadLetterRead:
    """One dead letter with its whole body as kept."""
    with wiring.sessions() as session:
        return dead_letters.read_dead_letter(session, letter_id)


@router.post(
    "/{letter_id}/replay", status_code=202, response_model=DeadLetterReplayed, responses=responses(401, 403, 404, 409)
)
def replay_dead_letter(letter_id: LetterId, wiring: WiringDep, principal: OperatorDep) -> DeadLetterReplayed:
    """Publish a dead letter again to the queue it came from (a step report to the
    orchestrator, a step dispatch to its ``cap.*`` queue), once what made it fail is fixed, and
    delete it: through the outbox, in one transaction. If it fails again it comes back as a new
    dead letter. 409 (and it is kept): its source is no queue of ours, or its body is not a
    message that queue takes."""
    with unit_of_work(wiring) as session:
        replayed = dead_letters.replay(session, letter_id, utcnow())
    log.info("%s replayed dead letter %d to %s", principal.ref, letter_id, replayed.queue)
    return replayed


@router.delete("/{letter_id}", status_code=204, responses=responses(401, 403, 404, 422))
def delete_dead_letter(letter_id: LetterId, wiring: WiringDep, principal: OperatorDep) -> Response:
    """Delete one dead letter."""
    with wiring.sessions.begin() as session:
        dead_letters.delete_dead_letter(session, letter_id)
    log.info("%s deleted dead letter %d", principal.ref, letter_id)
    return Response(status_code=204)
