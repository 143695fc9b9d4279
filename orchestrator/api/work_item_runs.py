"""``/api/v1/work-items/{id}/compensate`` and ``/runs``: run an item's compensation plan as a saga,
and read the item's run documents (the spec's §6)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response

from models.item_runs import CompensateRequest, RunDocument
from models.principal import Scope
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import responses
from orchestrator.sagas import item_compensation, item_runs
from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/work-items", tags=["work items"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
AUTH = (401, 403)
ItemId = Annotated[str, Path(description="The work item's id.")]


@router.post(
    "/{item_id}/compensate",
    status_code=202,
    response_model=RunDocument,
    responses=responses(*AUTH, 404, 409, 422),
)
def compensate_work_item(
    item_id: ItemId,
    response: Response,
    wiring: WiringDep,
    principal: PrincipalDep,
    body: CompensateRequest | None = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="A retry with the same key (and body) answers with the run the first call started (200).",
        ),
    ] = None,
) -> RunDocument:
    """Run the item's compensation plan as a saga (202): its actions, in reverse order of their
    listing, each on its handler's capability queue. A done item moves to rolled_back when every
    action has run; an action that gives up opens a remediation item. A second compensate while
    one runs is a 409; so is one for an item with no plan, still open, or already rolled back."""
    body = body or CompensateRequest()
    started = item_compensation.compensate(
        wiring.sessions,
        wiring.settings,
        principal,
        item_id,
        idempotence_key=idempotency_key,
        failed_step=body.failed_step,
        reason=body.reason,
    )
    if started.outbox:
        try:
            wiring.dispatcher.publish(started.outbox)
        except Exception:
            # Committed already; the outbox sweep publishes it shortly.
            log.exception("publishing the compensation of %s failed; the sweep will retry", item_id)
    if not started.created:
        response.status_code = 200
    with wiring.sessions() as session:
        # Its answer is the run it started: a caller who may compensate (work:write) sees it.
        return item_runs.run_of(session, principal, item_id, started.run.saga_id, scope=Scope.work_write)


@router.get("/{item_id}/runs", response_model=list[RunDocument], responses=responses(*AUTH, 404))
def work_item_runs(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[RunDocument]:
    """The item's run documents: the saga a step of which it decides (if any), then its compensation runs."""
    with wiring.sessions() as session:
        return item_runs.runs_of(session, principal, item_id)


@router.get("/{item_id}/runs/{run_id}", response_model=RunDocument, responses=responses(*AUTH, 404))
def work_item_run(
    item_id: ItemId,
    run_id: Annotated[str, Path(description="The run's id (its saga's).")],
    wiring: WiringDep,
    principal: PrincipalDep,
) -> RunDocument:
    """One run document of the item."""
    with wiring.sessions() as session:
        return item_runs.run_of(session, principal, item_id, run_id)
