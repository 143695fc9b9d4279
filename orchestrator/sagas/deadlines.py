"""Giving up on a running saga's current step: at the saga's deadline, and when an SLA breach
cancels it. The step's running attempts time out (their work items are cancelled), a retry that
was waiting is dropped, and what was done is compensated."""

from __future__ import annotations

from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from models.tables import SagaRun
from models.template import TemplateSpec
from orchestrator.sagas.keys import timer_key
from orchestrator.sagas.steps import kind_of
from orchestrator.sagas.steps.kind import StepMoves


def saga_deadline(moves: StepMoves, saga: SagaRun, spec: TemplateSpec) -> None:
    """The saga ran out of time: stop waiting on the current step and compensate. Once it
    compensates, the deadline no longer applies (undoing must finish)."""
    if saga.state is not SagaState.running:
        return
    stop_and_compensate(moves, saga, spec, f"DeadlineExceeded: the saga's deadline of {spec.deadline_ms} ms passed")


def stop_and_compensate(
    moves: StepMoves, saga: SagaRun, spec: TemplateSpec, why: str, outcome: Outcome = Outcome.timed_out
) -> None:
    """Give up on the running saga's current step (its attempt ends with ``outcome``, its work
    items are cancelled, a waiting retry is dropped) and compensate what was done."""
    current = next((s for s in saga.steps if s.state in (StepState.running, StepState.retry_wait)), None)
    if current is None:
        return
    index = current.index
    step_spec = spec.steps[index]
    error = f"{why} during step {current.name!r}"
    kind = kind_of(step_spec, Phase.forward)
    for attempt in moves.store.running_attempts(saga.id, index, Phase.forward):
        attempt.outcome = outcome
        attempt.finished_at = moves.now
        attempt.error = error
        kind.on_timeout(moves, saga, attempt, why)
    # A retry that was waiting must not go out any more.
    moves.uow.cancel_timer(timer_key(TimerKind.dispatch, saga.id, index, Phase.forward, current.current_attempt + 1))
    current.state = StepState.failed
    current.error = error
    current.finished_at = moves.now
    saga.error = error
    saga.updated_at = moves.now
    # A handler may have done its work before the deadline, and a fan-out of work items may have
    # items that were done: undo them too (a fan-out's compensation covers only the done items).
    maybe_done = step_spec.kind == "handler" or (
        step_spec.for_each is not None and bool(moves.store.items_done(saga.id, index))
    )
    uncertain = index if maybe_done else None
    moves.compensate_below(saga, spec, index + 1 if uncertain is not None else index, uncertain=uncertain)
