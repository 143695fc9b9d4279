"""The coordinator: applies batches of worker reports to sagas under row locks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span
from pydantic import TypeAdapter, ValidationError

from config import tracing
from config.logging import log_context
from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome
from models.messages import DeadLetterReport, OrchestratorMessage, StepReport
from models.problems import body_text, error_details, summary
from models.tables import DeadLetter, SagaRun
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.service.dispatcher import Dispatcher
from orchestrator.storage.db import SessionFactory, lock_sagas
from orchestrator.work.gates import validations

log = logging.getLogger(__name__)

_MESSAGE = TypeAdapter[StepReport | DeadLetterReport](OrchestratorMessage)
# The length of DeadLetter.source.
SOURCE_CHARS = 200


@dataclass
class BatchResult:
    """What one batch of reports did: applied, dropped as stale or duplicate, or dead-lettered."""

    applied: int = 0
    dropped: int = 0
    dead_lettered: int = 0


def parse_message(body: Any, source: str) -> StepReport | DeadLetterReport:
    """A report, or a dead letter explaining why the body is not one."""
    try:
        return _MESSAGE.validate_python(body)
    except ValidationError as exc:
        reason = summary(error_details(exc.errors()))
        return DeadLetterReport(source=source, reason=f"malformed report: {reason}", body=body_text(body))


def dead_letter_row(source: str, reason: str, body: Any, now: datetime) -> DeadLetter:
    """A dead letter's row, its texts made storable: whoever sent a message chose what it holds
    (a NUL, which PostgreSQL's text refuses; a source longer than its column)."""
    return DeadLetter(
        source=body_text(source)[:SOURCE_CHARS], reason=body_text(reason), body=body_text(body), received_at=now
    )


def _apply_span(saga: SagaRun, report: StepReport) -> AbstractContextManager[Span | None]:
    """The span of applying one report, in the saga's trace: after the span that ran the attempt
    (the report's traceparent), or linked to it where it is of another trace (a request that
    ended a work item). What the report makes the saga dispatch is written inside it."""
    if not tracing.enabled():
        return nullcontext()
    attributes: dict[str, str | int] = {
        "workyard.saga_id": saga.id,
        "workyard.step_index": report.step_index,
        "workyard.phase": report.phase.value,
        "workyard.attempt": report.attempt,
        "workyard.outcome": report.outcome.value,
    }
    if report.member is not None:
        attributes["workyard.member"] = report.member
    return tracing.span(
        "report apply",
        kind=tracing.CONSUMER,
        trace_of=saga.trace_parent,
        parent=report.traceparent,
        attributes=attributes,
    )


class Coordinator:
    """Applies step reports to saga runs under row locks and writes the outbox rows of what comes next."""

    def __init__(self, sessions: SessionFactory, settings: Settings, dispatcher: Dispatcher):
        self.sessions = sessions
        self.settings = settings
        self.dispatcher = dispatcher

    def handle(self, bodies: Sequence[Any], source: str = "workyard.orchestrator") -> BatchResult:
        """Apply a batch in one transaction, then publish what it dispatched."""
        messages = [parse_message(b, source) for b in bodies]
        steps = [m for m in messages if isinstance(m, StepReport)]
        # A validator run's report (a policy check) settles the run, not a saga.
        checks = [r for r in steps if validations.is_validation(r.saga_id)]
        reports = [r for r in steps if not validations.is_validation(r.saga_id)]
        result = BatchResult()
        now = utcnow()
        with self.sessions.begin() as session:
            for letter in (m for m in messages if isinstance(m, DeadLetterReport)):
                session.add(dead_letter_row(letter.source, letter.reason, letter.body, now))
                result.dead_lettered += 1
            if checks:
                result.applied += validations.apply_reports(session, checks, now)
            # With the running attempts the reports answer: on PostgreSQL in the same round trip.
            sagas = lock_sagas(session, (r.saga_id for r in reports), running=True)
            held = session.uow.held.running_attempts(session, sagas)
            running = {(a.saga_id, a.step_index, a.phase, a.attempt): a for a in held}
            engine = SagaEngine(session.uow, SqlSagaStore(session), self.settings, now)
            for report in reports:
                saga = sagas.get(report.saga_id)
                if saga is None:
                    reason = f"report for unknown saga {report.saga_id}"
                    session.add(dead_letter_row(source, reason, report.model_dump_json(), now))
                    result.dead_lettered += 1
                    continue
                with log_context(saga_id=saga.id, tenant=saga.tenant), _apply_span(saga, report) as span:
                    # Looked up, not removed: the members of a fan-out step report on one attempt,
                    # which stays running until its completion policy decides.
                    attempt = running.get((report.saga_id, report.step_index, report.phase, report.attempt))
                    if attempt is None or attempt.outcome is not Outcome.running:
                        # A duplicate, or an answer to an attempt already settled (timed out, lost).
                        result.dropped += 1
                        if span is not None:
                            span.set_attribute("workyard.dropped", True)
                        continue
                    spec = template_of(session, saga)
                    engine.on_report(saga, spec, report, attempt)
                    result.applied += 1
            self.dispatcher.delete_published(session)
        self.dispatcher.publish(session.uow.take_outgoing())
        if result.dropped:
            log.debug("dropped %d duplicate or stale report(s)", result.dropped)
        return result

    def dead_letter(self, body: Any, reason: str, source: str = "workyard.orchestrator") -> None:
        with self.sessions.begin() as session:
            session.add(dead_letter_row(source, reason, body, utcnow()))
