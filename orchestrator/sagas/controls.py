"""An operator's controls of one saga run, decided under its row lock: cancel, terminate, pause,
resume, retry a compensation that gave up, and rerun (:mod:`orchestrator.sagas.rerun`).

Like the engine's other moves they only change the saga run, its step runs and attempts, and
leave what they cause (dispatches of compensations, cancelled work items, dropped timers) to the
transaction's unit of work. A late report of an attempt stopped here finds it no longer running
and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, Phase, SagaControl, SagaState, StepState
from models.principal import ALL_TENANTS
from models.tables import SagaAuditEntry, SagaRun, StepAttempt
from models.template import TemplateSpec
from orchestrator.errors import Conflict, NotFound
from orchestrator.sagas.clocks import sync_clocks
from orchestrator.sagas.deadlines import stop_and_compensate
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.rerun import plan as rerun_plan
from orchestrator.sagas.rerun import rerun
from orchestrator.sagas.steps import kind_of
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.storage.db import SessionFactory, lock_sagas
from orchestrator.storage.unit_of_work import Outgoing

# How each control reads in a saga's error: "cancelled by user:ops: ...".
_DONE = {
    SagaControl.cancel: "cancelled",
    SagaControl.terminate: "terminated",
    SagaControl.pause: "paused",
    SagaControl.resume: "resumed",
    SagaControl.retry_compensation: "compensation retried",
    SagaControl.rerun: "rerun",
}


@dataclass(frozen=True)
class Controlled:
    """What a control did (as its audit entry records it) and the messages to publish now."""

    detail: dict[str, Any]
    outbox: list[Outgoing]


def control_saga(
    sessions: SessionFactory,
    settings: Settings,
    saga_id: str,
    action: SagaControl,
    *,
    actor: str,
    reason: str,
    tenant: str = ALL_TENANTS,
    from_step: str | None = None,
    input_patch: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> Controlled:
    """Apply ``action`` to the saga in one transaction, under its row lock (so a report or a
    timer applied at the same moment goes before or after it, never half), with its audit entry.
    A saga of another tenant is not found, as a missing one. The caller publishes the outbox.
    A rerun starts ``from_step`` (default: the first that did not succeed) with ``input_patch``
    applied; ``dry_run``: only its plan, nothing changed."""
    now = utcnow()
    with sessions.begin() as session:
        saga = lock_sagas(session, [saga_id]).get(saga_id)
        if saga is None or (tenant != ALL_TENANTS and saga.tenant != tenant):
            raise NotFound(f"no saga with id {saga_id!r}")
        engine = SagaEngine(session.uow, SqlSagaStore(session), settings, now)
        why = f"{_DONE[action]} by {actor}: {reason}"
        spec = template_of(session, saga)
        if action is SagaControl.rerun:
            start, new_input, steps = rerun_plan(saga, spec, from_step, input_patch, _last_outcomes(session, saga.id))
            detail: dict[str, Any] = {
                "from": saga.state.value,
                "to": SagaState.running.value,
                "start": spec.steps[start].name,
                "input_patch": input_patch,
                "input": new_input,
                "steps": [step.model_dump() for step in steps],
            }
            if dry_run:
                return Controlled(detail, [])
            detail["closed"] = rerun(engine, saga, spec, start, new_input, steps, actor, why)
        else:
            detail = control(engine, saga, spec, action, why, actor)
        if not saga.state.terminal:
            # Stopped by a pause, started by a resume or a cancel (a saga that ended took its
            # clocks along), unless a template's or capability's pause still holds it.
            sync_clocks(session.uow, engine.store, saga, now)
        entry = SagaAuditEntry(saga_id=saga.id, at=now, actor=actor, action=action.value, reason=reason, detail=detail)
        session.add(entry)
    return Controlled(detail, session.uow.take_outgoing())


# The step states in which a step has an attempt under way, or one waiting to go out.
_UNDER_WAY = (StepState.running, StepState.retry_wait, StepState.compensating)


def _last_outcomes(session: Session, saga_id: str) -> dict[int, Outcome]:
    """The outcome of each step's last forward attempt."""
    rows = session.execute(
        select(StepAttempt.step_index, StepAttempt.outcome)
        .where(StepAttempt.saga_id == saga_id, StepAttempt.phase == Phase.forward)
        .order_by(StepAttempt.step_index, StepAttempt.attempt)
    )
    return {index: Outcome(outcome) for index, outcome in rows}


def control(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, action: SagaControl, why: str, actor: str
) -> dict[str, Any]:
    """Apply ``action`` to ``saga`` (locked) for ``actor``; what it did, for the audit trail. A
    saga the action cannot apply to now is a :class:`Conflict` saying what can."""
    before = saga.state
    if action is SagaControl.retry_compensation:
        return retry_compensation(engine, saga, spec, why, actor)
    if before.terminal:
        raise Conflict(f"saga {saga.id} is {before.value} already: there is nothing left to {action.value}")
    if action is SagaControl.pause:
        return pause(engine, saga)
    if action is SagaControl.resume:
        return resume(engine, saga, spec)
    # Cancelling or terminating a paused or held saga ends its pause: what was held back is not
    # sent (a compensation that follows may be held again, by its capability's pause).
    if saga.paused_at is not None:
        _unpause(saga, engine.now)
    saga.held = saga.held_by = saga.held_at = None
    stopped = [s.name for s in saga.steps if s.state in _UNDER_WAY]
    if action is SagaControl.cancel:
        cancel(engine, saga, spec, why)
    else:
        terminate(engine, saga, spec, why)
    return {"from": before.value, "to": saga.state.value, "stopped": stopped}


def pause(engine: SagaEngine, saga: SagaRun) -> dict[str, Any]:
    """Dispatch nothing new: what is under way goes on, and its report is applied, but the
    dispatch that would follow (the next step, a retry, the next compensation) is held until
    the saga is resumed. Its deadline and SLA clocks stand still meanwhile."""
    if saga.paused_at is not None:
        raise Conflict(f"saga {saga.id} is paused already (since {saga.paused_at:%Y-%m-%d %H:%M:%S}); resume it")
    saga.paused_at = engine.now
    saga.updated_at = engine.now
    return {"from": saga.state.value, "to": "paused", "stopped": []}


def resume(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec) -> dict[str, Any]:
    """Send what the pause held back, and start the clocks again where they stood."""
    if saga.paused_at is None:
        raise Conflict(f"saga {saga.id} is not paused: there is nothing to resume")
    held = saga.held
    _unpause(saga, engine.now)
    engine.send_held(saga, spec)
    sent = [] if held is None else [f"{spec.steps[held['index']].name} ({held['phase']})"]
    return {"from": "paused", "to": saga.state.value, "sent": sent}


def retry_compensation(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, why: str, actor: str) -> dict[str, Any]:
    """A compensation gave up and a person has fixed what made it fail: dispatch it again, with
    its attempts counted afresh, and close the remediation items it opened. Once it succeeds the
    steps below are undone in order, as if it had never failed."""
    step = next((s for s in saga.steps if s.state is StepState.compensation_failed), None)
    if saga.state is not SagaState.compensation_failed or step is None:
        raise Conflict(
            f"saga {saga.id} is {saga.state.value}: only a saga whose compensation gave up "
            "(compensation_failed) has a compensation to retry"
        )
    closed = engine.store.close_remediations(saga, actor, why)
    engine.compensate_again(saga, spec, step.index)
    return {
        "from": SagaState.compensation_failed.value,
        "to": saga.state.value,
        "sent": [f"{step.name} (compensate)"],
        "closed": closed,
    }


def _unpause(saga: SagaRun, now: datetime) -> None:
    # The time its clocks stood still is added up as they start again (orchestrator.sagas.clocks).
    assert saga.paused_at is not None
    saga.paused_at = None
    saga.updated_at = now


def cancel(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, why: str) -> None:
    """Stop dispatching and undo what was done, in reverse order. A step under way is given up
    as a deadline gives it up (its work items are cancelled, a waiting retry dropped), and, since
    its handler may have done its work, undone too. The saga ends ``cancelled`` once undone."""
    if saga.state is SagaState.compensating:
        raise Conflict(
            f"saga {saga.id} is compensating already: it is undoing what it did, and a cancel would "
            "change nothing; terminate it to stop without undoing the rest"
        )
    saga.cancelled_at = engine.now
    if any(s.state in (StepState.running, StepState.retry_wait) for s in saga.steps):
        stop_and_compensate(engine, saga, spec, why, Outcome.cancelled)
        return
    # Nothing under way (a saga between steps is not committed so; kept safe all the same).
    saga.error = why
    saga.updated_at = engine.now
    engine.compensate_below(saga, spec, len(spec.steps))


def terminate(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, why: str) -> None:
    """Stop where it stands, undoing nothing: the attempts under way end ``cancelled`` (their
    work items are cancelled, their late reports ignored), retries waiting are dropped, and the
    saga ends ``terminated``. What its steps did stays done; the timeline says which."""
    phase = Phase.compensate if saga.state is SagaState.compensating else Phase.forward
    for step in saga.steps:
        if step.state not in _UNDER_WAY:
            continue
        kind = kind_of(spec.steps[step.index], phase)
        for attempt in engine.store.running_attempts(saga.id, step.index, phase):
            attempt.outcome = Outcome.cancelled
            attempt.finished_at = engine.now
            attempt.error = f"{why} during step {step.name!r}"
            kind.on_timeout(engine, saga, attempt, why)
        step.state = StepState.failed if phase is Phase.forward else StepState.compensation_failed
        step.error = f"{why} during step {step.name!r}"
        step.finished_at = engine.now
    saga.error = why
    # Finishing drops every timer of the saga: its retries waiting, its deadline, its SLA clocks.
    engine.finish(saga, SagaState.terminated)
