"""The run documents of a work item (the spec's §6): built from what the saga engine records
(saga runs, step runs, step attempts) for the sagas tied to the item, its own (the saga a step
of which it decides) and the runs of its compensation plan."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import SagaState
from models.item_runs import CompensationStatus, RunDocument, RunLog, RunStep
from models.principal import Principal, Scope
from models.tables import SagaRun, StepAttempt
from models.work_tables import WorkItem, WorkItemCompensation
from orchestrator.errors import NotFound
from orchestrator.work.access import require
from orchestrator.work.views import load_item


def compensation_status(state: SagaState) -> CompensationStatus:
    """A compensation run's status, from its saga's state."""
    if state is SagaState.completed:
        return "completed"
    if state in (SagaState.running, SagaState.compensating):
        return "running"
    return "failed"


def _own_status(state: SagaState) -> CompensationStatus:
    """The status of a saga's own compensation (it undoes its steps after one gave up)."""
    if state is SagaState.compensating:
        return "running"
    if state in (SagaState.compensated, SagaState.cancelled):
        return "completed"
    if state is SagaState.compensation_failed:
        return "failed"
    return "none"


def runs_of(
    session: Session, principal: Principal, item_id: str, *, scope: Scope = Scope.work_read
) -> list[RunDocument]:
    """The item's runs: its own saga first, then its compensation runs, oldest first. ``scope``:
    the one the caller needs (the answer to a compensate is its run, under work:write)."""
    require(principal, scope)
    item = load_item(session, principal, item_id)
    runs = list(
        session.scalars(
            select(WorkItemCompensation)
            .where(WorkItemCompensation.item_id == item.id)
            .order_by(WorkItemCompensation.created_at, WorkItemCompensation.id)
        )
    )
    saga_ids = ([item.saga_id] if item.saga_id else []) + [r.saga_id for r in runs]
    sagas = {s.id: s for s in session.scalars(select(SagaRun).where(SagaRun.id.in_(saga_ids)))} if saga_ids else {}
    logs = _logs(session, list(sagas))
    documents: list[RunDocument] = []
    last = compensation_status(SagaState(sagas[runs[-1].saga_id].state)) if runs and runs[-1].saga_id in sagas else None
    if item.saga_id is not None and item.saga_id in sagas:
        saga = sagas[item.saga_id]
        own = _own_status(SagaState(saga.state))
        documents.append(_document(item, saga, logs, "saga", own if own != "none" or last is None else last, None))
    for run in runs:
        ran = sagas.get(run.saga_id)
        if ran is not None:
            status = compensation_status(SagaState(ran.state))
            documents.append(_document(item, ran, logs, "compensation", status, run.requested_by))
    return documents


def run_of(
    session: Session, principal: Principal, item_id: str, run_id: str, *, scope: Scope = Scope.work_read
) -> RunDocument:
    for document in runs_of(session, principal, item_id, scope=scope):
        if document.runId == run_id:
            return document
    raise NotFound(f"work item {item_id} has no run {run_id!r}")


def _logs(session: Session, saga_ids: list[str]) -> dict[tuple[str, int], list[RunLog]]:
    found: dict[tuple[str, int], list[RunLog]] = defaultdict(list)
    if not saga_ids:
        return found
    attempts = session.scalars(
        select(StepAttempt)
        .where(StepAttempt.saga_id.in_(saga_ids))
        .order_by(StepAttempt.saga_id, StepAttempt.step_index, StepAttempt.dispatched_at, StepAttempt.id)
    )
    for a in attempts:
        found[(a.saga_id, a.step_index)].append(
            RunLog(
                at=a.dispatched_at,
                phase=a.phase.value,
                attempt=a.attempt,
                outcome=a.outcome.value,
                worker=a.worker,
                error=a.error,
                endedAt=a.finished_at,
            )
        )
    return found


def _document(
    item: WorkItem,
    saga: SagaRun,
    logs: dict[tuple[str, int], list[RunLog]],
    kind: str,
    status: CompensationStatus,
    requested_by: str | None,
) -> RunDocument:
    steps = []
    for step in saga.steps:
        entries = logs.get((saga.id, step.index), [])
        started = step.started_at or (entries[0].at if entries else None)
        steps.append(
            RunStep(
                stepId=step.name, status=step.state.value, startedAt=started, endedAt=step.finished_at, logs=entries
            )
        )
    return RunDocument(
        runId=saga.id,
        workItemId=item.id,
        kind="saga" if kind == "saga" else "compensation",
        template=saga.template_name,
        state=saga.state.value,
        steps=steps,
        compensationStatus=status,
        createdAt=saga.created_at,
        endedAt=saga.finished_at,
        requestedBy=requested_by,
    )
