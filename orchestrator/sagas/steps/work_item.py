"""The engine's moves for steps that wait on work items: opening the item (or a fan-out's
items), counting a fan-out's members against its completion policy, and giving up on a step when
the saga's deadline passes. Like the engine, they only write rows in the caller's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from models.enums import Outcome, Phase, SagaState, StepState
from models.keytemplate import render_value
from models.lifecycles import LIFECYCLES
from models.messages import StepReport
from models.step_item import WorkItemStepSpec
from models.tables import SagaRun, StepAttempt
from models.template import TemplateSpec
from models.work_tables import WorkItem
from orchestrator.errors import OrchestratorError
from orchestrator.sagas.timer_keys import TIMER_DISPATCH, timer_key
from orchestrator.work.links import ItemSpecError, cancel_items, item_values, members, open_item

if TYPE_CHECKING:
    from orchestrator.sagas.engine import SagaEngine


def open_step_items(
    engine: SagaEngine,
    saga: SagaRun,
    spec: TemplateSpec,
    index: int,
    phase: Phase,
    attempt_no: int,
    item_spec: WorkItemStepSpec,
) -> None:
    """A person or an agent does this attempt: open its work item and wait, holding no
    worker slot. The item's end comes back as a report; ``timeout_ms`` is its deadline."""
    step_spec = spec.steps[index]
    try:
        if step_spec.for_each is None:
            opened = [open_item(engine.session, saga, spec, index, phase, attempt_no, item_spec, engine.now)]
        else:
            opened = [
                open_item(
                    engine.session, saga, spec, index, phase, attempt_no, item_spec, engine.now, member=n, each=each
                )
                for n, each in fan_elements(engine, saga, spec, index, phase)
            ]
    except (ItemSpecError, OrchestratorError) as exc:
        # The saga's data cannot make this item: no retry will change that.
        error = f"WorkItemNotCreated: {getattr(exc, 'message', None) or exc}"
        engine.settle_at_once(saga, spec, index, phase, attempt_no, Outcome.failed, error=error)
        return
    if step_spec.for_each is not None:
        needed = step_spec.completion.needed(len(opened)) if phase is Phase.forward else len(opened)
        if (verdict := decided_at_start(len(opened), needed)) is not None:
            engine.settle_at_once(saga, spec, index, phase, attempt_no, verdict[0], error=verdict[1], result=[])
            return
    label = f"work item {opened[0]}" if step_spec.for_each is None else f"{len(opened)} work items"
    deadline = engine.now + timedelta(milliseconds=step_spec.timeout_ms) if step_spec.timeout_ms else None
    engine.attempt_rows.append(
        engine.attempt_row(saga, spec, index, phase, attempt_no, worker=label[:255], deadline_at=deadline)
    )


def decided_at_start(members: int, needed: int) -> tuple[Outcome, str | None] | None:
    """A fan-out decided before any member runs: nothing to wait for (an empty list, nothing to
    undo), or a policy no list this short can meet. None: it has to run."""
    if needed == 0:
        return Outcome.succeeded, None
    if members < needed:
        return Outcome.failed, f"FanOutFailed: {members} member(s), {needed} needed"
    return None


def fan_elements(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase
) -> list[tuple[int, Any]]:
    """The members of a fan-out: the list's elements going forward; compensating, only the
    members that were done (their compensation undoes what they did)."""
    step_spec = spec.steps[index]
    assert step_spec.for_each is not None
    if phase is Phase.forward:
        elements = render_value(step_spec.for_each, item_values(saga, spec, step_spec))
        if not isinstance(elements, list):
            raise ItemSpecError(f"for_each {step_spec.for_each} is not a list but {type(elements).__name__}")
        return list(enumerate(elements))
    last = engine.session.scalar(
        select(func.max(WorkItem.saga_attempt)).where(
            WorkItem.saga_id == saga.id,
            WorkItem.saga_step_index == index,
            WorkItem.saga_phase == Phase.forward.value,
        )
    )
    if last is None:
        return []
    return [
        (i.saga_member or 0, i.meta.get("each"))
        for i in members(engine.session, saga.id, index, Phase.forward, last)
        if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded
    ]


def member_report(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
) -> None:
    """A member of a fan-out ended. Count them all again (so a duplicate report changes
    nothing) and settle the attempt once the completion policy is met or can no longer be."""
    index, phase = report.step_index, Phase(report.phase)
    step_spec = spec.steps[index]
    items = members(engine.session, saga.id, index, phase, report.attempt)
    done = [i for i in items if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded]
    still_open = [i for i in items if i.is_open]
    needed = step_spec.completion.needed(len(items)) if phase is Phase.forward else len(items)
    outcome = policy_verdict(len(done), len(still_open), needed)
    if outcome is None:
        return  # undecided: the attempt keeps running
    reason = "its fan-out's completion policy was met" if outcome is Outcome.succeeded else "its fan-out failed"
    cancel_items(engine.session, saga.id, index, phase, report.attempt, reason)
    done_ids = {i.id for i in done}
    result = [i.result if i.id in done_ids else None for i in items]
    worker = f"{len(done)} of {len(items)} work items done"
    if outcome is Outcome.succeeded:
        end_fan_out(engine, saga, spec, attempt, report, outcome, worker=worker, result=result)
        return
    if phase is Phase.forward and done:
        # What the done members did must be undone too: the compensation sees which.
        saga.results = {**saga.results, step_spec.name: result}
    error = f"FanOutFailed: {len(done)} of {len(items)} done, {needed} needed"
    end_fan_out(engine, saga, spec, attempt, report, outcome, worker=worker, error=error, compensate_self=bool(done))


def policy_verdict(done: int, pending: int, needed: int) -> Outcome | None:
    """A fan-out's verdict so far: succeeded once ``needed`` members are done, failed once they
    no longer can be (``pending`` still may), None while undecided."""
    if done >= needed:
        return Outcome.succeeded
    if done + pending < needed:
        return Outcome.failed
    return None


def end_fan_out(
    engine: SagaEngine,
    saga: SagaRun,
    spec: TemplateSpec,
    attempt: StepAttempt,
    report: StepReport,
    outcome: Outcome,
    *,
    worker: str,
    result: Any = None,
    error: str | None = None,
    retryable: bool = False,
    compensate_self: bool = False,
) -> None:
    """Close a fan-out's attempt on its verdict (its deadline is off) and settle the step."""
    index, phase = report.step_index, Phase(report.phase)
    attempt.outcome = outcome
    attempt.worker = worker[:255]
    attempt.error = error
    attempt.started_at = attempt.dispatched_at
    attempt.finished_at = engine.now
    engine.settle(
        saga,
        spec,
        index,
        phase,
        outcome,
        retryable=retryable,
        retry_after_ms=None,
        result=result,
        error=error,
        compensate_self=compensate_self,
    )


def saga_deadline(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec) -> None:
    """The saga ran out of time: stop waiting on the current step and compensate. Once it
    compensates, the deadline no longer applies (undoing must finish)."""
    if saga.state is not SagaState.running:
        return
    stop_and_compensate(engine, saga, spec, f"DeadlineExceeded: the saga's deadline of {spec.deadline_ms} ms passed")


def stop_and_compensate(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, why: str) -> None:
    """Give up on the running saga's current step (its attempt times out, its work items are
    cancelled, a waiting retry is dropped) and compensate what was done."""
    current = next((s for s in saga.steps if s.state in (StepState.running, StepState.retry_wait)), None)
    if current is None:
        return
    index = current.index
    step_spec = spec.steps[index]
    error = f"{why} during step {current.name!r}"
    for attempt in engine.session.scalars(
        select(StepAttempt).where(
            StepAttempt.saga_id == saga.id,
            StepAttempt.step_index == index,
            StepAttempt.phase == Phase.forward,
            StepAttempt.outcome == Outcome.running,
        )
    ):
        attempt.outcome = Outcome.timed_out
        attempt.finished_at = engine.now
        attempt.error = error
        if step_spec.item_for(Phase.forward.value) is not None:
            cancel_items(engine.session, saga.id, index, Phase.forward, attempt.attempt, why)
    # A retry that was waiting must not go out any more.
    engine.cancel_timer(timer_key(TIMER_DISPATCH, saga.id, index, Phase.forward, current.current_attempt + 1))
    current.state = StepState.failed
    current.error = error
    current.finished_at = engine.now
    saga.error = error
    saga.updated_at = engine.now
    # A handler may have done its work before the deadline: undo it too.
    uncertain = index if step_spec.kind == "handler" else None
    engine.compensate_below(saga, spec, index + 1 if uncertain is not None else index, uncertain=uncertain)
