"""A step run by one handler: one Celery task per attempt on ``cap.<capability>``."""

from __future__ import annotations

from models.enums import Phase
from models.keytemplate import render
from models.messages import StepReport
from models.tables import SagaRun, StepAttempt
from models.template import TemplateSpec
from orchestrator.sagas.keys import step_values
from orchestrator.sagas.steps.kind import StepMoves, settle_report


class HandlerStep:
    """One task per attempt; under a mutex scope, with a fencing token from the database."""

    def dispatch(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int
    ) -> None:
        step_spec = spec.steps[index]
        scope = render(step_spec.mutex_scope, step_values(saga, spec, step_spec)) if step_spec.mutex_scope else None
        token = moves.store.fencing_token() if scope is not None else None
        moves.uow.attempts.append(
            moves.attempt_row(
                saga, spec, index, phase, attempt_no, fencing_token=token, deadline_at=moves.attempt_deadline(step_spec)
            )
        )
        moves.send(saga, spec, index, phase, attempt_no, scope=scope, token=token)

    def resend(self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> int:
        step_spec = spec.steps[attempt.step_index]
        scope = render(step_spec.mutex_scope, step_values(saga, spec, step_spec)) if step_spec.mutex_scope else None
        moves.send(
            saga,
            spec,
            attempt.step_index,
            Phase(attempt.phase),
            attempt.attempt,
            scope=scope,
            token=attempt.fencing_token,
            expires_at=attempt.deadline_at,
        )
        return 1

    def on_report(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
    ) -> None:
        settle_report(moves, saga, spec, report, attempt)

    def on_timeout(self, moves: StepMoves, saga: SagaRun, attempt: StepAttempt, reason: str) -> str:
        # A Celery task cannot be taken back: its outcome stays unknown (compensated if need be).
        return reason
