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

from typing import Any

from models.enums import Outcome, Phase
from models.messages import StepReport
from models.tables import SagaRun, StepAttempt
from models.template import TemplateSpec
from orchestrator.sagas.steps.fan_out import end_fan_out, list_elements, policy
from orchestrator.sagas.steps.kind import StepMoves, reported_error, reported_worker, settle_report
from orchestrator.sagas.store import MAYBE_DONE
from orchestrator.work.links import ItemSpecError


class HandlerFanOut:
    """A task per element of a list; the completion policy settles the attempt."""

    def dispatch(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int
    ) -> None:
        step_spec = spec.steps[index]
        try:
            members = self._members(moves, saga, spec, index, phase)
        except ItemSpecError as exc:
            moves.settle_at_once(saga, spec, index, phase, attempt_no, Outcome.failed, error=f"FanOutFailed: {exc}")
            return
        if (verdict := policy(step_spec, phase).decided_at_start(len(members))) is not None:
            moves.settle_at_once(saga, spec, index, phase, attempt_no, verdict[0], error=verdict[1], result=[])
            return
        moves.uow.attempts.append(
            moves.attempt_row(
                saga,
                spec,
                index,
                phase,
                attempt_no,
                worker=f"{len(members)} members",
                deadline_at=moves.attempt_deadline(step_spec),
            )
        )
        for member, each in members:
            moves.uow.members.append(
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
            moves.send(saga, spec, index, phase, attempt_no, member=member, each=each)

    def resend(self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> int:
        """The members still running; those that ended have been counted."""
        index, phase = attempt.step_index, Phase(attempt.phase)
        running = [
            m
            for m in moves.store.fan_out_members(saga.id, index, phase, attempt.attempt)
            if m.outcome is Outcome.running
        ]
        for m in running:
            moves.send(
                saga, spec, index, phase, attempt.attempt, member=m.member, each=m.each, expires_at=attempt.deadline_at
            )
        return len(running)

    @staticmethod
    def _members(
        moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase
    ) -> list[tuple[int, Any]]:
        """Going forward: the list's elements. Compensating: the members that did (or may have
        done) what is to be undone, in the last forward attempt."""
        if phase is Phase.forward:
            return list_elements(saga, spec, index)
        if spec.steps[index].item_for(Phase.forward.value) is not None:
            return moves.store.items_done(saga.id, index)  # undoing a fan-out of work items by handler
        return moves.store.members_to_undo(saga.id, index)

    def on_report(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
    ) -> None:
        """One member ended. Record it once (a duplicate finds it settled), then settle the attempt
        if the completion policy is met or can no longer be."""
        if report.member is None:
            settle_report(moves, saga, spec, report, attempt)
            return
        index, phase = report.step_index, Phase(report.phase)
        member = moves.store.fan_out_member(saga.id, index, phase, report.attempt, report.member)
        if member is None or member.outcome is not Outcome.running:
            return
        member.outcome = Outcome(report.outcome)
        member.worker = reported_worker(report)
        member.error = reported_error(report)
        member.result = report.result if member.outcome is Outcome.succeeded else None
        member.finished_at = report.finished_at or moves.now
        rows = moves.store.fan_out_members(saga.id, index, phase, report.attempt)
        done = [r for r in rows if r.outcome is Outcome.succeeded]
        running = [r for r in rows if r.outcome is Outcome.running]
        completion = policy(spec.steps[index], phase)
        outcome = completion.verdict(len(rows), len(done), len(running))
        if outcome is None:
            return  # undecided: the attempt keeps running
        result = [r.result if r.outcome is Outcome.succeeded else None for r in rows]
        worker = f"{len(done)} of {len(rows)} members succeeded"
        if outcome is Outcome.succeeded:
            end_fan_out(moves, saga, spec, attempt, report, outcome, worker=worker, result=result)
            return
        failed = [r for r in rows if r.outcome not in (Outcome.succeeded, Outcome.running)]
        error = (
            f"FanOutFailed: {len(failed)} of {len(rows)} members failed, {completion.needed(len(rows))} must succeed "
            f"({len(done)} succeeded, {len(running)} still running); "
            + "; ".join(f"[{r.member}] {r.error or r.outcome.value}" for r in failed[:3])
        )
        if phase is Phase.forward:
            saga.results = {**saga.results, spec.steps[index].name: result}
            # Members that succeeded, or may have (still running, lost), had their effect: undo them too.
            maybe_done = any(r.outcome in MAYBE_DONE for r in rows)
            end_fan_out(
                moves, saga, spec, attempt, report, outcome, worker=worker, error=error, compensate_self=maybe_done
            )
            return
        # An undoing that failed is tried again by the compensation's retry policy (members already
        # undone answer from the idempotence store).
        end_fan_out(moves, saga, spec, attempt, report, outcome, worker=worker, error=error, retryable=True)

    def on_timeout(self, moves: StepMoves, saga: SagaRun, attempt: StepAttempt, reason: str) -> str:
        return reason
