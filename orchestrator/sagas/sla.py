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
from typing import Any

from models.enums import SagaState, TimerKind
from models.sla import BreachAction, SlaSpec
from models.tables import SagaRun, Timer
from models.template import TemplateSpec
from orchestrator.metrics import instruments
from orchestrator.sagas.deadlines import stop_and_compensate
from orchestrator.sagas.steps.kind import StepMoves

KINDS = (TimerKind.saga_sla_warn, TimerKind.saga_sla_breach, TimerKind.saga_sla_escalate)


def schedule(moves: StepMoves, saga: SagaRun, sla: SlaSpec) -> None:
    """The saga's SLA timers, from its start."""

    def timer(kind: TimerKind, key: str, after_ms: float, payload: dict[str, Any]) -> None:
        due = saga.created_at + timedelta(milliseconds=after_ms)
        moves.uow.arm_timer(f"{kind.value}:{saga.id}:{key}", kind, due, moves.now, saga_id=saga.id, payload=payload)

    if sla.warn_at_pct is not None:
        timer(TimerKind.saga_sla_warn, "warn", sla.target_ms * sla.warn_at_pct / 100, {})
    timer(TimerKind.saga_sla_breach, "breach", sla.target_ms, {})
    for n, step in enumerate(sla.escalation):
        timer(TimerKind.saga_sla_escalate, str(n), step.after_ms, {"step": n})


def _live(saga: SagaRun, spec: TemplateSpec) -> SlaSpec | None:
    if spec.sla is None or saga.state.terminal:
        return None
    return spec.sla


def warn(moves: StepMoves, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
    if (sla := _live(saga, spec)) is None:
        return
    saga.sla_warned_at = moves.now
    _note(moves, saga, "sla_warning", pct=sla.warn_at_pct)
    moves.store.emit(saga, "saga.sla_warning", _event(saga, None), moves.now)


def breach(moves: StepMoves, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
    if (sla := _live(saga, spec)) is None:
        return
    saga.sla_breached_at = saga.sla_breached_at or moves.now
    saga.sla_breach_count += 1
    instruments.sla_breached(moves.uow, "saga")
    _note(moves, saga, "sla_breached", action=sla.breach_action, target_ms=sla.target_ms)
    moves.store.emit(saga, "saga.sla_breached", _event(saga, sla.breach_action), moves.now)
    apply(moves, saga, spec, sla.breach_action, sla.breach_to, why="the saga's SLA was breached")


def escalate(moves: StepMoves, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
    if (sla := _live(saga, spec)) is None:
        return
    n = int(timer.payload.get("step", 0))
    if n < len(sla.escalation):
        step = sla.escalation[n]
        _note(moves, saga, "escalation_step", step=n + 1, of=len(sla.escalation), action=step.action, to=step.to)
        moves.store.emit(saga, "saga.escalated", {**_event(saga, step.action), "to": step.to, "step": n + 1}, moves.now)
        apply(moves, saga, spec, step.action, step.to, why=f"escalation step {n + 1} of the saga's SLA")


def apply(
    moves: StepMoves, saga: SagaRun, spec: TemplateSpec, action: BreachAction, to: str | None, *, why: str
) -> None:
    now = moves.now
    if action == "notify":
        return  # the webhook above is the notification
    if action in ("escalate", "pause"):
        items = moves.store.waited_on(saga.id)
        for item in items:
            moves.store.act_on_item(item, action, to, now, why=why)
        extra = {} if items else {"nothing": _nothing(action)}
        _note(moves, saga, action, items=[i.id for i in items], to=to, **extra)
    elif action == "cancel":
        if saga.state is not SagaState.running:
            _note(moves, saga, "cancel_refused", reason=f"the saga is {saga.state.value}; undoing must finish")
            return
        # Late is the same as past its deadline: stop waiting and compensate.
        stop_and_compensate(moves, saga, spec, f"SlaBreached: {why}")
        _note(moves, saga, "cancelled")
    else:
        approval = action == "queue-human-approval"
        opened = moves.store.open_follow_up(
            saga,
            now,
            tenant=moves.settings.remediation_tenant,
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
        _note(moves, saga, "approval_queued" if approval else "remediation_opened", item=opened)


def _nothing(action: str) -> str:
    return f"the saga waits on no work item now: nothing to {action} (a running handler is left as it is)"


def _note(moves: StepMoves, saga: SagaRun, what: str, **details: Any) -> None:
    saga.sla_events = [*saga.sla_events, {"at": moves.now.isoformat(), "what": what, **details}]
    saga.updated_at = moves.now


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
