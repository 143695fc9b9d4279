"""Fan-out steps run by handlers: one Celery task per element of a list, in parallel, finished
by the step's completion policy (all, any, at least k of N).

Each member is dispatched like a step of its own (its own idempotence key, ``ctx.member`` and
``ctx.each`` for its element) and reports on the step's attempt; a row per member records what
became of it. The attempt settles as soon as the policy is met, or can no longer be met; members
still running then are left to finish (a Celery task cannot be taken back), and their outcome
stays unknown. So compensating a fan-out undoes every member that succeeded *or may have*: the
same rule as for a single step whose outcome is unknown. A compensation is itself fanned out,
one member per member to undo, and needs all of them.

Members retry transient errors inside their attempt (as every handler does). A fan-out that
fails for good is not retried as a whole: it compensates. A fan-out whose attempt times out is
retried by the step's retry policy; members that already succeeded answer from the idempotence
store without running again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from models.enums import Outcome, Phase
from models.messages import StepReport
from models.tables import FanOutMember, SagaRun, StepAttempt
from models.template import TemplateSpec
from orchestrator.sagas.steps.work_item import decided_at_start, end_fan_out, fan_elements, policy_verdict
from orchestrator.work.links import ItemSpecError

if TYPE_CHECKING:
    from orchestrator.sagas.engine import SagaEngine

# A member whose outcome is one of these may have had its effect.
MAYBE_DONE = (Outcome.succeeded, Outcome.running, Outcome.timed_out, Outcome.lost)


def dispatch_members(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int
) -> None:
    step_spec = spec.steps[index]
    try:
        members = _members(engine, saga, spec, index, phase)
    except ItemSpecError as exc:
        engine.settle_at_once(saga, spec, index, phase, attempt_no, Outcome.failed, error=f"FanOutFailed: {exc}")
        return
    needed = step_spec.completion.needed(len(members)) if phase is Phase.forward else len(members)
    if (verdict := decided_at_start(len(members), needed)) is not None:
        engine.settle_at_once(saga, spec, index, phase, attempt_no, verdict[0], error=verdict[1], result=[])
        return
    engine.attempt_rows.append(
        engine.attempt_row(
            saga,
            spec,
            index,
            phase,
            attempt_no,
            worker=f"{len(members)} members",
            deadline_at=engine.attempt_deadline(step_spec),
        )
    )
    for member, each in members:
        engine.member_rows.append(
            {
                "saga_id": saga.id,
                "step_index": index,
                "phase": phase,
                "attempt": attempt_no,
                "member": member,
                "each": each,
                "outcome": Outcome.running,
            }
        )
        engine.send(saga, spec, index, phase, attempt_no, member=member, each=each)


def _members(engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase) -> list[tuple[int, Any]]:
    """Going forward: the list's elements. Compensating: the members that did (or may have done)
    what is to be undone, in the last forward attempt."""
    if phase is Phase.forward or spec.steps[index].item_for(Phase.forward.value) is not None:
        # The list's elements; or, undoing a fan-out of work items, the items that were done.
        return fan_elements(engine, saga, spec, index, phase)
    session = engine.session
    last = session.scalar(
        select(func.max(FanOutMember.attempt)).where(
            FanOutMember.saga_id == saga.id, FanOutMember.step_index == index, FanOutMember.phase == Phase.forward
        )
    )
    if last is None:
        return []
    rows = session.scalars(
        select(FanOutMember)
        .where(
            FanOutMember.saga_id == saga.id,
            FanOutMember.step_index == index,
            FanOutMember.phase == Phase.forward,
            FanOutMember.attempt == last,
            FanOutMember.outcome.in_(MAYBE_DONE),
        )
        .order_by(FanOutMember.member)
    )
    return [(r.member, r.each) for r in rows]


def member_report(
    engine: SagaEngine, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
) -> None:
    """One member ended. Record it once (a duplicate finds it settled), then settle the attempt
    if the completion policy is met or can no longer be."""
    index, phase = report.step_index, Phase(report.phase)
    session = engine.session
    member = session.get(FanOutMember, (saga.id, index, phase, report.attempt, report.member))
    if member is None or member.outcome is not Outcome.running:
        return
    member.outcome = Outcome(report.outcome)
    member.worker = report.worker[:255] if report.worker else None
    member.error = f"{report.error.type}: {report.error.message}" if report.error else None
    member.result = report.result if member.outcome is Outcome.succeeded else None
    member.finished_at = report.finished_at or engine.now
    rows = list(
        session.scalars(
            select(FanOutMember)
            .where(
                FanOutMember.saga_id == saga.id,
                FanOutMember.step_index == index,
                FanOutMember.phase == phase,
                FanOutMember.attempt == report.attempt,
            )
            .order_by(FanOutMember.member)
        )
    )
    done = [r for r in rows if r.outcome is Outcome.succeeded]
    running = [r for r in rows if r.outcome is Outcome.running]
    needed = spec.steps[index].completion.needed(len(rows)) if phase is Phase.forward else len(rows)
    outcome = policy_verdict(len(done), len(running), needed)
    if outcome is None:
        return  # undecided: the attempt keeps running
    result = [r.result if r.outcome is Outcome.succeeded else None for r in rows]
    worker = f"{len(done)} of {len(rows)} members succeeded"
    if outcome is Outcome.succeeded:
        end_fan_out(engine, saga, spec, attempt, report, outcome, worker=worker, result=result)
        return
    failed = [r for r in rows if r.outcome not in (Outcome.succeeded, Outcome.running)]
    error = (
        f"FanOutFailed: {len(failed)} of {len(rows)} members failed, {needed} must succeed "
        f"({len(done)} succeeded, {len(running)} still running); "
        + "; ".join(f"[{r.member}] {r.error or r.outcome.value}" for r in failed[:3])
    )
    if phase is Phase.forward:
        saga.results = {**saga.results, spec.steps[index].name: result}
        # Members that succeeded, or may have (still running, lost), had their effect: undo them too.
        maybe_done = any(r.outcome in MAYBE_DONE for r in rows)
        end_fan_out(
            engine, saga, spec, attempt, report, outcome, worker=worker, error=error, compensate_self=maybe_done
        )
        return
    # An undoing that failed is tried again by the compensation's retry policy (members already
    # undone answer from the idempotence store).
    end_fan_out(engine, saga, spec, attempt, report, outcome, worker=worker, error=error, retryable=True)
