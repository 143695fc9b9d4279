"""``/api/v1/timers``: what is due later, every tenant's, for an operator: durable timers and the
deadlines of running attempts. Read-only; an all-tenant token with ``sagas:read`` (or ``admin``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from models.enums import TimerKind
from models.principal import Principal, Scope
from models.timer_api import TimerListing
from models.work_api import no_null
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.errors import Forbidden, InvalidInput
from orchestrator.sagas.timer_listing import list_timers
from orchestrator.service.wiring import Wiring


async def operator(principal: Annotated[Principal, needs(Scope.sagas_read)]) -> Principal:
    if not principal.all_tenants:
        raise Forbidden(
            "timers span every tenant: only an all-tenant token (tenant *) may list them",
            details=[{"path": "tenant", "message": "needs an all-tenant token"}],
        )
    return principal


router = APIRouter(prefix="/api/v1/timers", tags=["timers"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
# The timer kinds, and "deadline" for running attempts' deadlines.
KINDS = [kind.value for kind in TimerKind] + ["deadline"]


def _kinds(schema: dict[str, Any]) -> None:
    """The kind's OpenAPI: one of :data:`KINDS`, never null."""
    no_null(schema)
    schema["enum"] = KINDS


@router.get("", response_model=TimerListing, responses=responses(401, 403, 422))
def get_timers(
    wiring: WiringDep,
    principal: Annotated[Principal, Depends(operator)],
    due: Annotated[bool, Query(description="Only what is due already (late, if the timer loop lags).")] = False,
    kind: Annotated[
        str | None,
        Query(
            json_schema_extra=_kinds,
            description="Only timers of this kind; deadline: only running attempts' deadlines.",
        ),
    ] = None,
    saga_id: Annotated[
        str | None, Query(min_length=1, max_length=36, json_schema_extra=no_null, description="Only this saga's.")
    ] = None,
    item_id: Annotated[
        str | None,
        Query(min_length=1, max_length=96, json_schema_extra=no_null, description="Only this work item's."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most timers, and deadlines, to list.")] = 50,
) -> TimerListing:
    """Pending durable timers, soonest first (retries, saga deadlines and SLA clocks, work-item
    SLA clocks and lease expiries), then the deadlines of running attempts, with their counts."""
    if kind is not None and kind not in KINDS:
        raise InvalidInput(
            f"kind must be one of {', '.join(KINDS)}", details=[{"path": "kind", "message": "unknown timer kind"}]
        )
    with wiring.sessions() as session:
        return list_timers(session, limit=limit, due_only=due, kind=kind, saga_id=saga_id, item_id=item_id)
