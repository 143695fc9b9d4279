"""Traceability reads (the work-items spec §13): an item's trace, and the validation of the
tenant's chains (goal → work item → agent action → artifact, compensations, approvals)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from models.principal import Principal, Scope
from models.traceability import TraceabilityValidation, TraceRead
from orchestrator.api.auth import needs
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.service.wiring import Wiring
from orchestrator.traceability.trace import trace
from orchestrator.traceability.validate import validate

router = APIRouter(tags=["traceability"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
ReadDep = Annotated[Principal, needs(Scope.work_read)]


@router.get("/api/v1/work-items/{item_id}/trace", response_model=TraceRead, responses=responses(401, 403, 404))
def work_item_trace(
    item_id: Annotated[str, Path(description="The work item's id.")], wiring: WiringDep, principal: ReadDep
) -> TraceRead:
    """The item's trace: the registered goals its relatedGoals name (and those not registered),
    the actions agents took on it (ACT- ids) and the artifacts they produced (ART- ids)."""
    with wiring.sessions() as session:
        return trace(session, principal, item_id)


@router.get(
    "/api/v1/traceability/validate", response_model=TraceabilityValidation, responses=responses(401, 403, 404, 422)
)
def validate_traceability(
    wiring: WiringDep,
    principal: ReadDep,
    item_id: Annotated[
        str | None,
        Query(alias="itemId", max_length=96, description="Validate this work item's chain only (default: the tenant)."),
    ] = None,
) -> TraceabilityValidation:
    """The spec's TraceabilityValidation document for the token's tenant, computed now. Each list
    holds at most 100 ids; the count beside it says how many there are. overallStatus is broken
    when a recorded link is missing or an id is wrong, incomplete when only goals lack work."""
    with wiring.sessions() as session:
        return validate(session, principal, item_id)
