"""SLAs on whole sagas (the work-items spec, sections 3 and 4, applied to a run).

The clock starts when the saga starts. The early warning, the breach and each escalation step
is one durable timer carrying the saga's id, so the timer loop fires it under the saga's row
lock and a finished saga's clock stops with it (its timers are deleted). What happened is kept
on the run itself (``sla_events``), shown by ``workyard saga show`` and the API.

A breach action on a saga means:

- ``notify``: a ``saga.sla_breached`` (or ``saga.escalated``) webhook, nothing else.
- ``escalate``: each work item the saga waits on right now is re-offered to the group ``to``
  (audited on the item); a saga waiting on a handler has nothing to re-offer, which is recorded.
- ``pause``: each work item the saga waits on is parked (``blocked``/``waiting``); a handler
  already running cannot be paused, which is recorded.
- ``cancel``: the saga stops waiting on its current step and compensates, as at its deadline.
- ``open-remediation`` / ``queue-human-approval``: an item for a person in the remediation
  tenant, naming the saga (opened once per breach).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from models.enums import SagaState
from models.sla import BreachAction, SlaSpec
from models.tables import SagaRun, Timer
from models.template import TemplateSpec
from models.work_tables import WorkItem
from orchestrator.sagas.steps.work_item import stop_and_compensate
from orchestrator.work import webhooks
from orchestrator.work.links import open_saga_follow_up
from orchestrator.work.sla import actions as item_sla

if TYPE_CHECKING:
    from orchestrator.sagas.engine import SagaEngine

WARN, BREACH, ESCALATE = "saga_sla_warn", "saga_sla_breach", "saga_sla_escalate"
KINDS = (WARN, BREACH, ESCALATE)


def schedule(engine: SagaEngine, saga: SagaRun, sla: SlaSpec) -> None:
    """The saga's SLA timers, from its start."""

    def timer(kind: str, key: str, after_ms: float, payload: dict[str, Any]) -> None:
        due = saga.created_at + timedelta(milliseconds=after_ms)
        engine.add_timer(f"{kind}:{saga.id}:{key}", kind, saga.id, payload, due)

    if sla.warn_at_pct is not None:
        timer(WARN, "warn", sla.target_ms * sla.warn_at_pct / 100, {})
    timer(BREACH, "breach", sla.target_ms, {})
    for n, step in enumerate(sla.escalation):
        timer(ESCALATE, str(n), step.after_ms, {"step": n})


def fire(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
    if spec.sla is None or saga.state in (
        SagaState.completed,
        SagaState.compensated,
        SagaState.compensation_failed,
    ):
        return
    sla, now = spec.sla, engine.now
    if timer.kind == WARN:
        saga.sla_warned_at = now
        _note(engine, saga, "sla_warning", pct=sla.warn_at_pct)
        webhooks.emit(engine.session, None, "saga.sla_warning", _event(saga, None), now)
    elif timer.kind == BREACH:
        saga.sla_breached_at = saga.sla_breached_at or now
        saga.sla_breach_count += 1
        _note(engine, saga, "sla_breached", action=sla.breach_action, target_ms=sla.target_ms)
        webhooks.emit(engine.session, None, "saga.sla_breached", _event(saga, sla.breach_action), now)
        apply(engine, saga, spec, sla.breach_action, sla.breach_to, why="the saga's SLA was breached")
    elif timer.kind == ESCALATE:
        n = int(timer.payload.get("step", 0))
        if n < len(sla.escalation):
            step = sla.escalation[n]
            _note(engine, saga, "escalation_step", step=n + 1, of=len(sla.escalation), action=step.action, to=step.to)
            webhooks.emit(
                engine.session, None, "saga.escalated", {**_event(saga, step.action), "to": step.to, "step": n + 1}, now
            )
            apply(engine, saga, spec, step.action, step.to, why=f"escalation step {n + 1} of the saga's SLA")


def apply(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, action: BreachAction, to: str | None, *, why: str
) -> None:
    session, now = engine.session, engine.now
    if action == "notify":
        return  # the webhook above is the notification
    if action in ("escalate", "pause"):
        items = _waited_on(engine, saga)
        for item in items:
            item_sla.apply(session, item, action, to, now, why=why)
        extra = {} if items else {"nothing": _nothing(action)}
        _note(engine, saga, action, items=[i.id for i in items], to=to, **extra)
    elif action == "cancel":
        if saga.state is not SagaState.running:
            _note(engine, saga, "cancel_refused", reason=f"the saga is {saga.state.value}; undoing must finish")
            return
        # Late is the same as past its deadline: stop waiting and compensate.
        stop_and_compensate(engine, saga, spec, f"SlaBreached: {why}")
        _note(engine, saga, "cancelled")
    else:
        approval = action == "queue-human-approval"
        opened = open_saga_follow_up(
            session,
            saga,
            now,
            tenant=engine.settings.remediation_tenant,
            kind="task" if approval else "remediation",
            key=f"saga:{saga.id}:sla:{action}:{saga.sla_breach_count}:{now.isoformat()}",
            title=(
                f"Approve continuing late saga {saga.id} ({saga.template_name})"
                if approval
                else f"Remediate late saga {saga.id} ({saga.template_name})"
            ),
            description=f"{why}. The saga keeps running; decide what to do about it.",
            payload={"late_saga": saga.id} if approval else _remediation(saga, now.isoformat(), why),
            scope="work:supervise" if approval else "work:claim",
        )
        _note(engine, saga, "approval_queued" if approval else "remediation_opened", item=opened)


def _waited_on(engine: SagaEngine, saga: SagaRun) -> list[WorkItem]:
    """The open work items the saga's current step waits on, locked, in id order."""
    return list(
        engine.session.scalars(
            select(WorkItem)
            .where(WorkItem.saga_id == saga.id, WorkItem.saga_step_index.is_not(None), WorkItem.is_open.is_(True))
            .order_by(WorkItem.id)
            .with_for_update()
        )
    )


def _nothing(action: str) -> str:
    return f"the saga waits on no work item now: nothing to {action} (a running handler is left as it is)"


def _note(engine: SagaEngine, saga: SagaRun, what: str, **details: Any) -> None:
    saga.sla_events = [*saga.sla_events, {"at": engine.now.isoformat(), "what": what, **details}]
    saga.updated_at = engine.now


def _event(saga: SagaRun, action: str | None) -> dict[str, Any]:
    return {
        "saga": {
            "id": saga.id,
            "template": saga.template_name,
            "version": saga.template_version,
            "state": saga.state.value,
            "sla_breach_count": saga.sla_breach_count,
        },
        "action": action,
    }


def _remediation(saga: SagaRun, at: str, why: str) -> dict[str, Any]:
    return {"incidentRef": f"saga:{saga.id}", "startAt": at, "remediationPlan": f"{why}; find out why"}
