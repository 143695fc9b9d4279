"""Steps that wait on work items: a person or an agent does the attempt (or each member of a
fan-out does its part), and the item's end comes back as a report through the outbox. The
attempt holds no worker slot; ``timeout_ms`` is its deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from models.enums import Outcome, Phase
from models.lifecycles import LIFECYCLES
from models.messages import StepReport
from models.tables import SagaRun, StepAttempt
from models.template import TemplateSpec
from orchestrator.errors import OrchestratorError
from orchestrator.sagas.steps.fan_out import end_fan_out, list_elements, policy
from orchestrator.sagas.steps.kind import StepMoves, settle_report
from orchestrator.work.links import ItemSpecError


class WorkItemStep:
    """One work item per attempt, or one per element of a list (``for_each``)."""

    def dispatch(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int
    ) -> None:
        step_spec = spec.steps[index]
        item_spec = step_spec.item_for(phase.value)
        assert item_spec is not None
        try:
            members = None if step_spec.for_each is None else self._members(moves, saga, spec, index, phase)
            opened = moves.store.open_items(saga, spec, index, phase, attempt_no, item_spec, moves.now, members)
        except (ItemSpecError, OrchestratorError) as exc:
            # The saga's data cannot make this item: no retry will change that.
            moves.settle_at_once(
                saga, spec, index, phase, attempt_no, Outcome.failed, error=f"WorkItemNotCreated: {exc}"
            )
            return
        if step_spec.for_each is not None:
            if (verdict := policy(step_spec, phase).decided_at_start(len(opened))) is not None:
                moves.settle_at_once(saga, spec, index, phase, attempt_no, verdict[0], error=verdict[1], result=[])
                return
        label = f"work item {opened[0]}" if step_spec.for_each is None else f"{len(opened)} work items"
        deadline = moves.now + timedelta(milliseconds=step_spec.timeout_ms) if step_spec.timeout_ms else None
        moves.uow.attempts.append(
            moves.attempt_row(saga, spec, index, phase, attempt_no, worker=label[:255], deadline_at=deadline)
        )

    @staticmethod
    def _members(
        moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase
    ) -> list[tuple[int, Any]]:
        """Going forward: the list's elements; compensating, only the members that were done
        (their compensation undoes what they did)."""
        if phase is Phase.forward:
            return list_elements(saga, spec, index)
        return moves.store.items_done(saga.id, index)

    def on_report(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
    ) -> None:
        if report.member is None or spec.steps[report.step_index].for_each is None:
            settle_report(moves, saga, spec, report, attempt)
            return
        self._member_report(moves, saga, spec, report, attempt)

    @staticmethod
    def _member_report(
        moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
    ) -> None:
        """A member of a fan-out ended. Count them all again (so a duplicate report changes
        nothing) and settle the attempt once the completion policy is met or can no longer be."""
        index, phase = report.step_index, Phase(report.phase)
        step_spec = spec.steps[index]
        items = moves.store.item_members(saga.id, index, phase, report.attempt)
        done = [i for i in items if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded]
        still_open = [i for i in items if i.is_open]
        completion = policy(step_spec, phase)
        outcome = completion.verdict(len(items), len(done), len(still_open))
        if outcome is None:
            return  # undecided: the attempt keeps running
        reason = "its fan-out's completion policy was met" if outcome is Outcome.succeeded else "its fan-out failed"
        moves.store.cancel_items(saga.id, index, phase, report.attempt, reason)
        done_ids = {i.id for i in done}
        result = [i.result if i.id in done_ids else None for i in items]
        worker = f"{len(done)} of {len(items)} work items done"
        if outcome is Outcome.succeeded:
            end_fan_out(moves, saga, spec, attempt, report, outcome, worker=worker, result=result)
            return
        if phase is Phase.forward and done:
            # What the done members did must be undone too: the compensation sees which.
            saga.results = {**saga.results, step_spec.name: result}
        error = f"FanOutFailed: {len(done)} of {len(items)} done, {completion.needed(len(items))} needed"
        end_fan_out(moves, saga, spec, attempt, report, outcome, worker=worker, error=error, compensate_self=bool(done))

    def resend(self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> int:
        # Nothing was dispatched: the items are in the database. (An item that ended wrote its
        # report to the outbox; once published, that report may be lost too: see
        # orchestrator.service.redis_loss.)
        return 0

    def on_timeout(self, moves: StepMoves, saga: SagaRun, attempt: StepAttempt, reason: str) -> str:
        moves.store.cancel_items(saga.id, attempt.step_index, Phase(attempt.phase), attempt.attempt, reason)
        return reason
