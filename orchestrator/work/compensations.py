"""What a work item's compensation run does to the item when its saga ends (§6, §3).

The saga that runs an item's compensation plan (``orchestrator.sagas.item_compensation``) is
tied to the item by a ``work_item_compensations`` row. When that saga ends, in the engine's
transaction: all its actions ran (``completed``) and the item moves ``done -> rolled_back``
where its lifecycle has that transition; an action gave up (the saga ended any other way) and the
run is ``failed``: a remediation item is opened about the item, routed as new items are.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import SagaState
from models.lifecycles import LIFECYCLES
from models.tables import SagaRun
from models.work_tables import WorkItem, WorkItemCompensation
from orchestrator.work import audit, remediation
from orchestrator.work.items import touch

# Every compensation saga's template name starts so: the engine's end-of-saga hook reads the
# compensations table for these only, not for every saga that ends.
TEMPLATE_PREFIX = "workitem-compensation."


class RunStatus(StrEnum):
    """Where a compensation run stands (the row's copy; the run document reads its saga's state)."""

    running = "running"
    completed = "completed"
    failed = "failed"


def saga_ended(session: Session, saga: SagaRun, now: datetime) -> None:
    """A saga ended: if it ran an item's compensation, settle the run and the item."""
    if not saga.template_name.startswith(TEMPLATE_PREFIX):
        return
    saga_id, state, error = saga.id, SagaState(saga.state), saga.error
    run = session.scalar(select(WorkItemCompensation).where(WorkItemCompensation.saga_id == saga_id).with_for_update())
    if run is None:
        return
    item = session.scalar(select(WorkItem).where(WorkItem.id == run.item_id).with_for_update())
    run.ended_at = now
    actor = f"saga:{saga_id}"
    if state is SagaState.completed:
        run.status = RunStatus.completed
        if item is None:
            return
        lifecycle = LIFECYCLES[item.lifecycle]
        if lifecycle.undone is not None and item.status in lifecycle.succeeded and not item.is_open:
            before = item.status
            item.status = lifecycle.undone
            touch(item)
            audit.record(
                session,
                item,
                "rolled_back",
                actor,
                from_status=before,
                to_status=item.status,
                reason=run.reason,
                details={"compensation": run.id, "saga_id": saga_id},
            )
        else:
            audit.record(
                session,
                item,
                "compensated",
                actor,
                reason=run.reason,
                details={"compensation": run.id, "saga_id": saga_id},
            )
        return
    run.status = RunStatus.failed
    if item is None:
        return
    why = f"could not be compensated: {error or state.value}"
    audit.record(
        session,
        item,
        "compensation_failed",
        actor,
        reason=error,
        details={"compensation": run.id, "saga_id": saga_id, "saga_state": state.value},
    )
    run.remediation_id = remediation.open_remediation(
        session,
        item,
        actor,
        now,
        why=why,
        key=f"compensation:{run.id}:{saga.reruns}",
        plan=f"undo by hand what the compensation of {item.id} left undone ({error or state.value})",
    )
