"""The seam between the saga engine and the kinds of step it runs.

A step kind (a handler, a fan-out of handlers, a work item or a fan-out of them) knows how an
attempt of its kind starts and how a report on it is counted; the engine knows what follows from
an attempt's outcome (next step, retry, compensation). A kind gets the engine as
:class:`StepMoves`: the clock, the unit of work, the store, and the settle callback. Kinds
never import the engine, so the engine depends on them and not the other way round.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from config.settings import Settings
from models.documents import keepable
from models.enums import Outcome, Phase
from models.messages import StepReport
from models.tables import SagaRun, StepAttempt
from models.template import StepSpec, TemplateSpec
from orchestrator.metrics import instruments
from orchestrator.sagas.store import SagaStore
from orchestrator.storage.unit_of_work import UnitOfWork


class StepMoves(Protocol):
    """What a step kind may do inside the engine's transaction."""

    settings: Settings
    now: datetime
    uow: UnitOfWork
    store: SagaStore

    def settle(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        outcome: Outcome,
        *,
        retryable: bool,
        retry_after_ms: int | None,
        result: Any,
        error: str | None,
        compensate_self: bool | None = None,
    ) -> None:
        """An attempt of step ``index`` ended with ``outcome``: decide what follows."""

    def settle_at_once(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt_no: int,
        outcome: Outcome,
        *,
        error: str | None,
        result: Any = None,
    ) -> None:
        """An attempt decided as it starts: record it as ended and settle it."""

    def attempt_row(
        self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int, **values: Any
    ) -> dict[str, Any]:
        """The timeline row of an attempt dispatched now."""

    def attempt_deadline(self, step_spec: StepSpec) -> datetime:
        """When an attempt of a handler step dispatched now times out without a report."""

    def send(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt_no: int,
        *,
        scope: str | None = None,
        token: int | None = None,
        member: int | None = None,
        each: Any = None,
        expires_at: datetime | None = None,
    ) -> None:
        """Write the dispatch of one attempt (or of one member of a fan-out's attempt) to the outbox;
        it expires at ``expires_at`` (default: the deadline of an attempt dispatched now)."""

    def compensate_below(self, saga: SagaRun, spec: TemplateSpec, below: int, *, uncertain: int | None = None) -> None:
        """Compensate the steps below ``below`` that need it, in strict reverse order."""


class StepKind(Protocol):
    """How attempts of one kind of step start, are reported on, and time out."""

    def dispatch(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int
    ) -> None:
        """Start attempt ``attempt_no`` of step ``index`` (its step run is already marked)."""

    def on_report(
        self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
    ) -> None:
        """Count a report on ``attempt`` (found running), and settle the attempt once it is decided."""

    def on_timeout(self, moves: StepMoves, saga: SagaRun, attempt: StepAttempt, reason: str) -> str:
        """The attempt is given up on (its deadline, the saga's): let go of what it holds;
        returns the error to record."""

    def resend(self, moves: StepMoves, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> int:
        """Write the dispatches of ``attempt`` (found running) to the outbox again, as they were
        (same attempt, idempotence key, fencing token, deadline): they may be lost (a Redis that
        lost its data). Returns how many were written."""


def settle_report(
    moves: StepMoves, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt
) -> None:
    """A report that decides its attempt by itself (a handler's, a work item's): record it on the
    attempt's row and settle the step."""
    attempt.outcome = Outcome(report.outcome)
    attempt.worker = reported_worker(report)
    attempt.started_at = report.started_at
    attempt.finished_at = report.finished_at or moves.now
    attempt.error = reported_error(report)
    phase = Phase(report.phase)
    capability = handler_capability(spec.steps[report.step_index], phase)
    instruments.step_settled(moves.uow, capability, phase, attempt.outcome, attempt.dispatched_at, moves.now)
    moves.settle(
        saga,
        spec,
        report.step_index,
        Phase(report.phase),
        Outcome(report.outcome),
        retryable=report.retryable,
        retry_after_ms=report.retry_after_ms,
        result=report.result,
        error=attempt.error,
    )


def handler_capability(step: StepSpec, phase: Phase) -> str | None:
    """The capability whose queue runs ``step``'s ``phase``; None where no handler runs it (a
    work item's forward phase)."""
    ran_a_handler = step.kind == "handler" if phase is Phase.forward else step.compensate is not None
    return step.capability if ran_a_handler else None


def reported_worker(report: StepReport) -> str | None:
    """Who ran it, as the timeline keeps it."""
    return keepable(report.worker)[:255] if report.worker else None


def reported_error(report: StepReport) -> str | None:
    """A report's error as the timeline keeps it. A handler's message may hold anything (a NUL from
    the saga's input, say); it is recorded spelled out rather than refused by the database, which
    would fail the whole batch of reports and leave the saga waiting for its deadline."""
    return keepable(f"{report.error.type}: {report.error.message}") if report.error else None
