"""``/api/v1/work-items/{id}/…`` of policy gates: approvals, evidence, validator runs, and what
the gate out of the item's status still lacks.

Evidence and approvals are only ever added: there is no route to change or delete them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from models.policies import (
    ApprovalCreate,
    ApprovalRead,
    EvidenceCreate,
    EvidenceRead,
    GateRead,
    ValidationCreate,
    ValidationRead,
)
from orchestrator.api.auth import PrincipalDep
from orchestrator.api.deps import get_wiring, unit_of_work
from orchestrator.api.errors import responses
from orchestrator.service.wiring import Wiring
from orchestrator.work.gates import approvals, evidence, gate_view, validations

router = APIRouter(prefix="/api/v1/work-items", tags=["policy gates"])
WiringDep = Annotated[Wiring, Depends(get_wiring)]
ItemId = Annotated[str, Path(description="The work item's id.")]


@router.get("/{item_id}/gate", response_model=GateRead, responses=responses(401, 403, 404))
def work_item_gate(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> GateRead:
    """The gated transitions out of the item's status and what each still lacks (what a try would
    answer with a 409). Needs work:read."""
    with wiring.sessions() as session:
        return gate_view.gate_status(session, principal, item_id)


@router.post(
    "/{item_id}/approvals",
    status_code=201,
    response_model=ApprovalRead,
    responses={
        200: {"model": ApprovalRead, "description": "The same decision made before: nothing added"},
        **responses(401, 403, 404, 409, 422),
    },
)
def approve_work_item(
    item_id: ItemId, body: ApprovalCreate, response: Response, wiring: WiringDep, principal: PrincipalDep
) -> ApprovalRead:
    """Approve or reject at the gate out of the item's status. Needs work:approve and, for a
    policy's step, a token in the step's role (group). Four-eyes: the item's creator, assignee,
    claimant and whoever claimed, started, completed or moved it may not approve (403
    four_eyes), nor may one person approve two steps. A rejection blocks the gate until the item
    leaves the status."""
    with wiring.sessions.begin() as session:
        approval, created = approvals.decide(session, principal, item_id, body)
    if not created:
        response.status_code = 200
    return approval


@router.get("/{item_id}/approvals", response_model=list[ApprovalRead], responses=responses(401, 403, 404))
def list_approvals(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[ApprovalRead]:
    """Every decision on the item, oldest first. Needs work:read."""
    with wiring.sessions() as session:
        return approvals.listed(session, principal, item_id)


@router.post(
    "/{item_id}/evidence",
    status_code=201,
    response_model=EvidenceRead,
    response_model_by_alias=True,
    responses={
        200: {"model": EvidenceRead, "description": "The same evidence (id and body) written before"},
        **responses(401, 403, 404, 409, 422),
    },
)
def add_evidence(
    item_id: ItemId, body: EvidenceCreate, response: Response, wiring: WiringDep, principal: PrincipalDep
) -> EvidenceRead:
    """Write evidence on the item; immutable once written. Each artifact is inline content (its
    SHA-256 computed) or an external uri with its declared sha256. The same id and body again
    answers 200; another body under the id is a 409. Needs work:write."""
    with wiring.sessions.begin() as session:
        written, created = evidence.attach(session, principal, item_id, body)
    if not created:
        response.status_code = 200
    return written


@router.get(
    "/{item_id}/evidence",
    response_model=list[EvidenceRead],
    response_model_by_alias=True,
    responses=responses(401, 403, 404),
)
def list_evidence(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[EvidenceRead]:
    """The item's evidence, oldest first. Needs work:read."""
    with wiring.sessions() as session:
        return evidence.listed(session, principal, item_id)


@router.post(
    "/{item_id}/validations",
    status_code=202,
    response_model=ValidationRead,
    responses={
        200: {"model": ValidationRead, "description": "A run of the check still pending: nothing dispatched"},
        **responses(401, 403, 404, 409, 422),
    },
)
def request_validation(
    item_id: ItemId, body: ValidationCreate, response: Response, wiring: WiringDep, principal: PrincipalDep
) -> ValidationRead:
    """Dispatch a check's validator to its capability's workers (202, state pending); read the
    result with GET. A sync check's gate opens once a run passed. Needs work:write."""
    with unit_of_work(wiring) as session:
        run, created = validations.request(session, principal, item_id, body)
    if not created:
        response.status_code = 200
    return run


@router.get("/{item_id}/validations", response_model=list[ValidationRead], responses=responses(401, 403, 404))
def list_validations(item_id: ItemId, wiring: WiringDep, principal: PrincipalDep) -> list[ValidationRead]:
    """The item's validator runs, oldest first. Needs work:read."""
    with wiring.sessions() as session:
        return validations.listed(session, principal, item_id)
