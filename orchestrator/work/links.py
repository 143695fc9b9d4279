"""The link between saga steps and work items, both ways.

Saga -> item: when a saga reaches a step of kind ``work_item`` (or the compensation of a step
that is a work item), the engine opens the item here, inside the saga's transaction.

Item -> saga: when such an item reaches a terminal status, the same transaction writes a step
report to the outbox (invariant 1), exactly as a worker would have sent it: ``succeeded`` with the
item's result when the work was done, ``failed`` (not retryable: a person said no) otherwise.
The coordinator applies it like any report, so a duplicate changes nothing (invariant 2).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from config import keys, tracing
from models.base import utcnow
from models.enums import Outcome, Phase
from models.errors import WorkyardError
from models.keytemplate import render_value
from models.lifecycles import LIFECYCLES, ORIGINS
from models.messages import ErrorInfo, StepReport
from models.principal import ALL_TENANTS
from models.step_item import WorkItemStepSpec
from models.tables import SagaRun
from models.template import StepSpec, TemplateSpec
from models.work_api import HumanOffer
from models.work_tables import LABELS, WorkItem
from orchestrator.errors import InvalidInput
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit, routing_hooks
from orchestrator.work.gates import policies
from orchestrator.work.ids import work_item_id
from orchestrator.work.sla import clock as sla_clock
from orchestrator.work.sla.follow_ups import open_follow_up
from orchestrator.work.types import check_policy, check_risk, get_type, validate_item

SAGA_ORIGIN = "saga"


class ItemSpecError(WorkyardError, ValueError):
    """The step's work item could not be rendered from the saga (a placeholder is missing)."""


def item_values(saga: SagaRun, spec: TemplateSpec, step: StepSpec) -> dict[str, Any]:
    return {
        "input": saga.input,
        "results": saga.results,
        "saga_id": saga.id,
        "step": step.name,
        "template": spec.name,
        "version": spec.version,
    }


def checked_item(
    session: Session,
    saga: SagaRun,
    spec: TemplateSpec,
    index: int,
    item_spec: WorkItemStepSpec,
    *,
    member: int | None = None,
    each: Any = None,
) -> dict[str, Any]:
    """The item a step attempt would open, rendered from the saga's data and checked against its
    type (schema, risk, policy): raises ``ItemSpecError`` or ``InvalidInput`` if it cannot be made.
    A fan-out checks every member this way before opening any, so none is left open alone."""
    step = spec.steps[index]
    values = item_values(saga, spec, step)
    if member is not None:
        values.update(each=each, each_index=member)
    try:
        rendered = render_value(
            {
                "title": item_spec.title,
                "description": item_spec.description,
                "assignee": item_spec.assignee,
                "labels": item_spec.labels,
                "payload": item_spec.payload,
            },
            values,
        )
    except ValueError as exc:
        raise ItemSpecError(str(exc)) from exc
    item_type = get_type(session, item_spec.type)
    try:
        check_risk(item_type, item_spec.risk_level)
        check_policy(item_type, rendered["payload"])
        policies.check_usable(session, saga.tenant, rendered["payload"])
    except InvalidInput as exc:
        raise ItemSpecError(str(exc)) from exc
    validate_item(
        item_type,
        {k: rendered[k] for k in ("title", "description", "payload") if rendered[k] is not None},
    )
    return dict(rendered)


def open_item(
    session: Session,
    saga: SagaRun,
    spec: TemplateSpec,
    index: int,
    phase: Phase,
    attempt: int,
    item_spec: WorkItemStepSpec,
    now: datetime,
    *,
    member: int | None = None,
    each: Any = None,
) -> str:
    """Create the item a step attempt waits on; returns its id.

    The id comes from the saga, step, phase and attempt, so opening the same attempt twice (a
    redelivered timer, a retried transaction) names the same item.
    """
    step = spec.steps[index]
    rendered = checked_item(session, saga, spec, index, item_spec, member=member, each=each)
    if saga.tenant == ALL_TENANTS:
        raise ItemSpecError("a saga of no tenant opens no work items: submit it for a tenant")
    # A saga's items open in its own tenant, whatever the template says (registration refused
    # templates that name another).
    tenant = saga.tenant
    key = f"saga:{saga.id}:{index}:{phase.value}:{attempt}" + (f":{member}" if member is not None else "")
    item_id = work_item_id(tenant, item_spec.type, now, key)
    if session.get(WorkItem, item_id) is not None:
        return item_id
    lifecycle = LIFECYCLES[ORIGINS[SAGA_ORIGIN]]
    assignee_type = assignee_id = None
    if rendered["assignee"]:
        assignee_type, _, assignee_id = str(rendered["assignee"]).partition(":")
    offer = item_spec.offer
    item = WorkItem(
        id=item_id,
        code=item_id,
        tenant=tenant,
        type=item_spec.type,
        lifecycle=lifecycle.name,
        origin=SAGA_ORIGIN,
        title=str(rendered["title"])[:500],
        description=rendered["description"],
        priority=item_spec.priority,
        status=lifecycle.initial,
        is_open=True,
        created_by=f"saga:{saga.id}",
        reporter_type=None,
        reporter_id=None,
        assignee_type=assignee_type,
        assignee_id=assignee_id,
        payload=rendered["payload"],
        meta={"saga": {"template": spec.name, "version": spec.version}}
        | ({"member": member, "each": each} if member is not None else {}),
        idempotence_key=key,
        offer_type=offer.type,
        offer_scope=offer.scope if isinstance(offer, HumanOffer) else None,
        offer_group=offer.group if isinstance(offer, HumanOffer) else None,
        offer_capability=None if isinstance(offer, HumanOffer) else offer.capability,
        lease_epoch=0,
        version=1,
        saga_id=saga.id,
        saga_step=step.name,
        saga_step_index=index,
        saga_phase=phase.value,
        saga_attempt=attempt,
        saga_member=member,
        trace_id=saga.trace_id,
        sla=item_spec.sla.model_dump(mode="json") if item_spec.sla else None,
        sla_breach_count=0,
        risk_level=item_spec.risk_level.value if item_spec.risk_level is not None else None,
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    session.flush()
    if item_spec.sla is not None:
        sla_clock.schedule(session, item, item_spec.sla, now)
    if rendered["labels"]:
        session.execute(
            insert(LABELS), [{"item_id": item_id, "label": str(lb)} for lb in dict.fromkeys(rendered["labels"])]
        )
    audit.record(
        session,
        item,
        "created",
        f"saga:{saga.id}",
        to_status=item.status,
        details={"type": item.type, "step": step.name, "phase": phase.value, "attempt": attempt},
    )
    routing_hooks.item_created(session, item, f"saga:{saga.id}")
    return item_id


def members(session: Session, saga_id: str, index: int, phase: Phase, attempt: int) -> list[WorkItem]:
    """The items of one attempt of a fan-out step, by member index."""
    return list(
        session.scalars(
            select(WorkItem)
            .where(
                WorkItem.saga_id == saga_id,
                WorkItem.saga_step_index == index,
                WorkItem.saga_phase == phase.value,
                WorkItem.saga_attempt == attempt,
            )
            .order_by(WorkItem.saga_member)
        )
    )


def cancel_items(session: Session, saga_id: str, index: int, phase: Phase, attempt: int, reason: str) -> int:
    """Cancel the open item of a step attempt the saga no longer waits for (its deadline passed)."""
    items = session.scalars(
        select(WorkItem)
        .where(
            WorkItem.saga_id == saga_id,
            WorkItem.saga_step_index == index,
            WorkItem.saga_phase == phase.value,
            WorkItem.saga_attempt == attempt,
            WorkItem.is_open.is_(True),
        )
        .with_for_update()
    ).all()
    for item in items:
        before = item.status
        item.status = "cancelled"
        item.is_open = False
        item.completed_at = utcnow()
        item.claimed_by_type = item.claimed_by_id = None
        item.claimed_at = item.lease_expires_at = None
        item.reason = reason
        item.version += 1
        item.updated_at = utcnow()
        audit.record(
            session, item, "cancelled", f"saga:{saga_id}", from_status=before, to_status="cancelled", reason=reason
        )
    return len(items)


def close_remediations(session: Session, saga_id: str, actor: str, reason: str) -> list[str]:
    """Close the saga's open remediation items as done (an operator fixed what they asked for and
    retries the compensation); their ids."""
    items = session.scalars(
        select(WorkItem)
        .where(
            WorkItem.saga_id == saga_id,
            WorkItem.type == "remediation",
            WorkItem.saga_step.is_not(None),  # a compensation's, not an SLA's (those name no step)
            WorkItem.is_open.is_(True),
        )
        .order_by(WorkItem.id)
        .with_for_update()
    ).all()
    now = utcnow()
    for item in items:
        before = item.status
        item.status = sorted(LIFECYCLES[item.lifecycle].succeeded)[0]
        item.is_open = False
        item.completed_at = now
        item.claimed_by_type = item.claimed_by_id = None
        item.claimed_at = item.lease_expires_at = None
        item.reason = reason
        item.version += 1
        item.updated_at = now
        audit.record(session, item, "closed", actor, from_status=before, to_status=item.status, reason=reason)
    return [item.id for item in items]


def report_outcome(session: Session, item: WorkItem, actor: str) -> None:
    """If a saga waits on ``item`` and it just ended, tell the saga (through the outbox)."""
    if item.saga_id is None or item.is_open or item.saga_step_index is None:
        return
    lifecycle = LIFECYCLES[item.lifecycle]
    done = item.status in lifecycle.succeeded and item.deleted_at is None
    now = utcnow()
    report = StepReport(
        saga_id=item.saga_id,
        step_index=item.saga_step_index,
        phase=Phase(item.saga_phase or Phase.forward.value),
        attempt=item.saga_attempt or 1,
        outcome=Outcome.succeeded if done else Outcome.failed,
        retryable=False,
        result=item.result if done else None,
        error=None
        if done
        else ErrorInfo(
            type="WorkItemNotDone", message=f"work item {item.id} ended {item.status}: {item.reason or '-'}"
        ),
        worker=actor,
        member=item.saga_member,
        started_at=item.started_at or item.created_at,
        finished_at=now,
        # The request (or timer) that ended the item, if traced: the saga's span applying the
        # report links to it (it is of another trace).
        traceparent=tracing.current_traceparent(),
    )
    uow_of(session).send(keys.ORCHESTRATOR_QUEUE, {"kind": "report", "body": report.model_dump(mode="json")}, now)


def open_remediation(
    session: Session, saga: SagaRun, step: str, attempt: int, error: str, tenant: str, now: datetime
) -> str:
    """A compensation gave up: open a remediation item for a person (invariant 4). It names the
    saga (``saga_id``) but answers no step, so completing it does not move the saga. One per
    attempt that gave up: a compensation retried by an operator that gives up again opens another."""
    return open_saga_follow_up(
        session,
        saga,
        now,
        tenant=tenant,
        kind="remediation",
        key=f"saga:{saga.id}:remediation:{step}:{attempt}",
        title=f"Saga {saga.id} ({saga.template_name}) could not undo step {step!r}",
        description=(
            f"The compensation of step {step!r} gave up: {error}. The steps before it were left as "
            "they are, so nothing is undone out of order. Undo by hand what needs undoing, then "
            "complete this item."
        ),
        payload={
            "incidentRef": f"saga:{saga.id}",
            "startAt": now.isoformat(),
            "remediationPlan": f"undo step {step!r} and the completed steps before it by hand",
            "error": error,
        },
        scope="work:claim",
        step=step,
    )


def open_saga_follow_up(
    session: Session,
    saga: SagaRun,
    now: datetime,
    *,
    tenant: str,
    kind: str,
    key: str,
    title: str,
    description: str,
    payload: dict[str, Any],
    scope: str,
    step: str | None = None,
) -> str:
    """An item for a person about a saga (a remediation, an approval to continue). It names the
    saga but answers no step, so completing it does not move the saga. Opened once per ``key``."""
    return open_follow_up(
        session,
        now,
        tenant=tenant,
        kind=kind,
        key=key,
        title=title,
        description=description,
        payload={**payload, "saga": {"id": saga.id, "template": saga.template_name, "version": saga.template_version}},
        scope=scope,
        created_by=f"saga:{saga.id}",
        priority=90,
        saga_id=saga.id,
        saga_step=step,
        trace_id=saga.trace_id,
    )
