"""An operator's controls of one saga run, decided under its row lock: cancel and terminate.

Like the engine's other moves they only change the saga run, its step runs and attempts, and
leave what they cause (dispatches of compensations, cancelled work items, dropped timers) to the
transaction's unit of work. A late report of an attempt stopped here finds it no longer running
and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, Phase, SagaControl, SagaState, StepState
from models.principal import ALL_TENANTS
from models.tables import SagaAuditEntry, SagaRun
from models.template import TemplateSpec
from orchestrator.errors import Conflict, NotFound
from orchestrator.sagas.deadlines import stop_and_compensate
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.steps import kind_of
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.storage.db import SessionFactory, lock_sagas
from orchestrator.storage.unit_of_work import Outgoing

# How each control reads in a saga's error: "cancelled by user:ops: ...".
_DONE = {SagaControl.cancel: "cancelled", SagaControl.terminate: "terminated"}


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
) -> Controlled:
    """Apply ``action`` to the saga in one transaction, under its row lock (so a report or a
    timer applied at the same moment goes before or after it, never half), with its audit entry.
    A saga of another tenant is not found, as a missing one. The caller publishes the outbox."""
    now = utcnow()
    with sessions.begin() as session:
        saga = lock_sagas(session, [saga_id]).get(saga_id)
        if saga is None or (tenant != ALL_TENANTS and saga.tenant != tenant):
            raise NotFound(f"no saga with id {saga_id!r}")
        engine = SagaEngine(session.uow, SqlSagaStore(session), settings, now)
        why = f"{_DONE[action]} by {actor}: {reason}"
        detail = control(engine, saga, template_of(session, saga), action, why)
        entry = SagaAuditEntry(saga_id=saga.id, at=now, actor=actor, action=action.value, reason=reason, detail=detail)
        session.add(entry)
    return Controlled(detail, session.uow.take_outgoing())


# The step states in which a step has an attempt under way, or one waiting to go out.
_UNDER_WAY = (StepState.running, StepState.retry_wait, StepState.compensating)


def control(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, action: SagaControl, why: str) -> dict[str, Any]:
    """Apply ``action`` to ``saga`` (locked); what it did, for the audit trail. A saga the
    action cannot apply to now is a :class:`Conflict` saying what can."""
    before = saga.state
    if before.terminal:
        raise Conflict(f"saga {saga.id} is {before.value} already: there is nothing left to {action.value}")
    stopped = [s.name for s in saga.steps if s.state in _UNDER_WAY]
    if action is SagaControl.cancel:
        cancel(engine, saga, spec, why)
    else:
        terminate(engine, saga, spec, why)
    return {"from": before.value, "to": saga.state.value, "stopped": stopped}


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
