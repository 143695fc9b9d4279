"""Moves sagas forward inside one transaction: dispatch, record outcomes, retry, compensate.

Every method runs under the saga's row lock (see :func:`orchestrator.storage.db.lock_sagas`) and only
writes rows: the messages it causes go to the outbox in the same transaction and are published
by the caller after commit (invariant 1).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable, delete, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from config import keys
from config.settings import Settings
from models.enums import Outcome, Phase, SagaState, StepState
from models.keytemplate import render
from models.messages import StepDispatch, StepReport
from models.tables import (
    ATTEMPTS,
    FAN_OUT_MEMBERS,
    FENCING_SEQUENCE,
    GLOBAL_SCOPE,
    OUTBOX,
    TIMERS,
    FencingCounter,
    SagaRun,
    StepAttempt,
    StepRun,
    Timer,
)
from models.template import StepSpec, TemplateSpec
from orchestrator.sagas import sla as saga_sla
from orchestrator.sagas.planner import GiveUp, after_failure, next_compensation, outcome_unknown
from orchestrator.sagas.steps import handler_fan_out as fanout
from orchestrator.sagas.steps import work_item as waiting
from orchestrator.sagas.timer_keys import TIMER_DISPATCH, TIMER_SAGA_DEADLINE, timer_key
from orchestrator.storage.db import pipelined
from orchestrator.work import webhooks
from orchestrator.work.links import cancel_items, open_remediation

_UNIFORM_UPDATES: dict[type, tuple[str, ...]] = {
    SagaRun: ("state", "results", "error", "updated_at", "finished_at"),
    StepRun: ("state", "attempts", "compensation_attempts", "current_attempt", "error", "started_at", "finished_at"),
    StepAttempt: ("outcome", "worker", "error", "started_at", "finished_at"),
}


@dataclass(frozen=True)
class Outgoing:
    """An outbox row written in this transaction, to publish once it has committed."""

    id: int
    queue: str
    payload: dict[str, Any]


def step_values(saga: SagaRun, spec: TemplateSpec, step: StepSpec) -> dict[str, Any]:
    """What a key template such as ``order:{input.order_id}`` may refer to."""
    return {"input": saga.input, "saga_id": saga.id, "step": step.name, "template": spec.name, "version": spec.version}


def idempotence_key(saga: SagaRun, spec: TemplateSpec, step: StepSpec, phase: Phase, member: int | None = None) -> str:
    base = (
        render(step.idempotence_key, step_values(saga, spec, step))
        if step.idempotence_key
        else f"{saga.id}:{step.name}"
    )
    if member is not None:
        base = f"{base}:{member}"  # each member of a fan-out has an effect of its own
    return base if phase is Phase.forward else f"{base}:compensate"


def new_step_runs(spec: TemplateSpec) -> list[StepRun]:
    return [
        StepRun(index=i, name=s.name, state=StepState.pending, attempts=0, compensation_attempts=0, current_attempt=0)
        for i, s in enumerate(spec.steps)
    ]


def issue_fencing_token(session: Session) -> int:
    """Next fencing token, from the database so it grows even if Redis forgot everything.

    One counter for every scope: a token that grows globally grows per scope, and one counter
    cannot deadlock two transactions that take scopes in different orders. PostgreSQL hands
    them out from a sequence (no row lock at all); SQLite serialises writers anyway.
    """
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(select(FENCING_SEQUENCE.next_value())).scalar_one())
    upsert = (
        sqlite.insert(FencingCounter)
        .values(scope=GLOBAL_SCOPE, last_token=1)
        .on_conflict_do_update(
            index_elements=[FencingCounter.scope], set_={"last_token": FencingCounter.last_token + 1}
        )
        .returning(FencingCounter.last_token)
    )
    return int(session.execute(upsert).scalar_one())


class SagaEngine:
    """One transaction's worth of saga moves. Collects the outbox rows it wrote."""

    def __init__(self, session: Session, settings: Settings, now: datetime, rand: Callable[[], float] = random.random):
        self.session = session
        self.settings = settings
        self.now = now
        self.rand = rand
        self.outbox: list[Outgoing] = []
        # Rows written in bulk by finalize(): one INSERT per table per transaction, not one
        # ORM flush per object (the coordinator's hottest path).
        self.attempt_rows: list[dict[str, Any]] = []
        self.member_rows: list[dict[str, Any]] = []
        self._outbox_rows: list[dict[str, Any]] = []
        self._timer_rows: list[dict[str, Any]] = []
        self._cancelled_timers: list[str] = []
        self._finished: list[str] = []

    # -- entry points ------------------------------------------------------------------------

    def start(self, saga: SagaRun, spec: TemplateSpec) -> None:
        if spec.deadline_ms is not None:
            self.add_timer(
                f"{TIMER_SAGA_DEADLINE}:{saga.id}",
                TIMER_SAGA_DEADLINE,
                saga.id,
                {},
                self.now + timedelta(milliseconds=spec.deadline_ms),
            )
        if spec.sla is not None:
            saga_sla.schedule(self, saga, spec.sla)
        self._dispatch(saga, spec, 0, Phase.forward)

    def on_report(self, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt) -> None:
        """Apply a worker's report to the attempt it answers (which the caller found running)."""
        step_spec = spec.steps[report.step_index]
        if report.member is not None and step_spec.for_each is not None:
            if step_spec.item_for(report.phase) is not None:
                waiting.member_report(self, saga, spec, report, attempt)
            else:
                fanout.member_report(self, saga, spec, report, attempt)
            return
        attempt.outcome = Outcome(report.outcome)
        attempt.worker = report.worker[:255] if report.worker else None
        attempt.started_at = report.started_at
        attempt.finished_at = report.finished_at or self.now
        attempt.error = f"{report.error.type}: {report.error.message}" if report.error else None
        self.settle(
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

    def on_timer(self, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
        if saga.state in (SagaState.completed, SagaState.compensated, SagaState.compensation_failed):
            return
        if timer.kind == TIMER_SAGA_DEADLINE:
            waiting.saga_deadline(self, saga, spec)
            return
        if timer.kind in saga_sla.KINDS:
            saga_sla.fire(self, saga, spec, timer)
            return
        index, phase, attempt_no = timer.payload["index"], Phase(timer.payload["phase"]), timer.payload["attempt"]
        step = saga.steps[index]
        if timer.kind == TIMER_DISPATCH:
            # Fire only if nothing was dispatched for this step since the timer was set.
            if step.current_attempt + 1 == attempt_no and self._phase_of(step) is phase:
                self._dispatch(saga, spec, index, phase)

    def on_deadline(self, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> None:
        """An attempt (found running, under the saga's lock) is past its deadline: it timed out."""
        index, phase = attempt.step_index, Phase(attempt.phase)
        attempt.outcome = Outcome.timed_out
        attempt.finished_at = self.now
        attempt.error = "TimedOut: no report from a worker before the step's deadline"
        if spec.steps[index].item_for(phase.value) is not None:
            attempt.error = "TimedOut: the work item was not finished before the step's deadline"
            cancel_items(self.session, saga.id, index, phase, attempt.attempt, "the step's deadline passed")
        self.settle(
            saga,
            spec,
            index,
            phase,
            Outcome.timed_out,
            retryable=True,
            retry_after_ms=None,
            result=None,
            error=attempt.error,
        )

    def finalize(self, first: Sequence[tuple[Executable, list[dict[str, Any]]]] = ()) -> None:
        """Write what was batched; call once before commit. ``first``: inserts of the caller's
        own (statement, rows) to send ahead of the batch's (a new saga and its steps)."""
        # Give every changed row of a table the same SET list, so the flush sends one
        # executemany per table instead of one UPDATE per row (rows of different shapes
        # interleave in primary-key order and would not group).
        for obj in self.session.dirty:
            for column in _UNIFORM_UPDATES.get(type(obj), ()):
                flag_modified(obj, column)
        self.session.flush()  # sagas and steps first: the rows below refer to them
        # These need no answer: on PostgreSQL they go in one round trip. (The inserts are
        # "inline": no RETURNING of generated keys, which a pipeline cannot answer in time.)
        with pipelined(self.session):
            for statement, rows in first:
                self.session.execute(statement, rows)
            if self.attempt_rows:
                # One executemany needs one shape: handler and work-item attempts set different columns.
                columns = {key for row in self.attempt_rows for key in row}
                rows = [dict.fromkeys(columns) | row for row in self.attempt_rows]
                self.session.execute(insert(ATTEMPTS).inline(), rows)
            if self.member_rows:
                self.session.execute(insert(FAN_OUT_MEMBERS).inline(), self.member_rows)
            if self._timer_rows:
                self.session.execute(insert(TIMERS).inline(), self._timer_rows)
            if self._cancelled_timers:
                self.session.execute(delete(TIMERS).where(TIMERS.c.key.in_(self._cancelled_timers)))
            if self._finished:
                # A finished saga needs none of its timers, including any written just above.
                self.session.execute(delete(TIMERS).where(TIMERS.c.saga_id.in_(self._finished)))
        if self._outbox_rows:
            ids = self.session.scalars(
                insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True), self._outbox_rows
            ).all()
            self.outbox += [Outgoing(i, r["queue"], r["payload"]) for i, r in zip(ids, self._outbox_rows, strict=True)]
        for batch in (
            self.attempt_rows,
            self.member_rows,
            self._outbox_rows,
            self._timer_rows,
            self._cancelled_timers,
            self._finished,
        ):
            batch.clear()

    # -- decisions ---------------------------------------------------------------------------

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
        compensate_self: bool = False,
    ) -> None:
        step = saga.steps[index]
        forward = phase is Phase.forward
        saga.updated_at = self.now
        if outcome.counts:
            if forward:
                step.attempts += 1
            else:
                step.compensation_attempts += 1

        if outcome is Outcome.succeeded:
            step.finished_at = self.now
            if not forward:
                step.state = StepState.compensated
                self.compensate_below(saga, spec, index)
            else:
                step.state = StepState.succeeded
                saga.results = {**saga.results, step.name: result}
                if index + 1 < len(spec.steps):
                    self._dispatch(saga, spec, index + 1, Phase.forward)
                else:
                    self._finish(saga, SagaState.completed)
            return

        step_spec = spec.steps[index]
        decision = after_failure(
            step_spec.retry if forward else step_spec.compensation_policy,
            counted_attempts=step.attempts if forward else step.compensation_attempts,
            outcome=outcome,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            rand=self.rand(),
        )
        if not isinstance(decision, GiveUp):
            if forward:
                step.state = StepState.retry_wait
            self._schedule_dispatch(saga, index, phase, step.current_attempt + 1, decision.delay_ms)
            return

        step.error = error
        step.finished_at = self.now
        if forward:
            step.state = StepState.failed
            saga.error = f"step {step.name!r} {decision.reason}: {error}"
            if outcome_unknown(outcome) or compensate_self:
                self.compensate_below(saga, spec, index + 1, uncertain=index)
            else:
                self.compensate_below(saga, spec, index)
        else:
            # Strict order: the steps below stay as they are; a person must look (remediation).
            step.state = StepState.compensation_failed
            saga.error = f"compensation of step {step.name!r} {decision.reason}: {error}"
            self._finish(saga, SagaState.compensation_failed)
            open_remediation(self.session, saga, step.name, error or "-", self.settings.remediation_tenant, self.now)

    def compensate_below(self, saga: SagaRun, spec: TemplateSpec, below: int, *, uncertain: int | None = None) -> None:
        saga.state = SagaState.compensating
        index = next_compensation(spec.steps, [StepState(s.state) for s in saga.steps], below, uncertain=uncertain)
        if index is None:
            self._finish(saga, SagaState.compensated)
            return
        step = saga.steps[index]
        step.state = StepState.compensating
        step.current_attempt = 0
        self._dispatch(saga, spec, index, Phase.compensate)

    def _finish(self, saga: SagaRun, state: SagaState) -> None:
        saga.state = state
        saga.finished_at = self.now
        saga.updated_at = self.now
        self._finished.append(saga.id)
        webhooks.emit(
            self.session,
            None,
            f"saga.{state.value}",
            {
                "saga": {
                    "id": saga.id,
                    "template": saga.template_name,
                    "version": saga.template_version,
                    "state": state.value,
                    "error": saga.error,
                }
            },
            self.now,
        )

    @staticmethod
    def _phase_of(step: StepRun) -> Phase:
        return Phase.compensate if step.state is StepState.compensating else Phase.forward

    # -- effects -----------------------------------------------------------------------------

    def _dispatch(self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase) -> None:
        step_spec = spec.steps[index]
        step = saga.steps[index]
        step.current_attempt += 1
        attempt_no = step.current_attempt
        if phase is Phase.forward:
            step.state = StepState.running
            step.started_at = step.started_at or self.now
        item_spec = step_spec.item_for(phase.value)
        if item_spec is not None:
            waiting.open_step_items(self, saga, spec, index, phase, attempt_no, item_spec)
            return
        if step_spec.for_each is not None:
            fanout.dispatch_members(self, saga, spec, index, phase, attempt_no)
            return
        scope = render(step_spec.mutex_scope, step_values(saga, spec, step_spec)) if step_spec.mutex_scope else None
        token = issue_fencing_token(self.session) if scope is not None else None
        self.attempt_rows.append(
            self.attempt_row(
                saga, spec, index, phase, attempt_no, fencing_token=token, deadline_at=self.attempt_deadline(step_spec)
            )
        )
        self.send(saga, spec, index, phase, attempt_no, scope=scope, token=token)

    def attempt_row(
        self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int, **values: Any
    ) -> dict[str, Any]:
        """The timeline row of an attempt dispatched now (running unless ``values`` say otherwise)."""
        return {
            "saga_id": saga.id,
            "step_index": index,
            "step_name": spec.steps[index].name,
            "phase": phase,
            "attempt": attempt_no,
            "outcome": Outcome.running,
            "dispatched_at": self.now,
            **values,
        }

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
        """An attempt decided as it starts (nothing to wait for, or nothing that could work):
        record it as ended and settle it; no retry would change the answer."""
        ended = {"outcome": outcome, "error": error, "finished_at": self.now}
        self.attempt_rows.append(self.attempt_row(saga, spec, index, phase, attempt_no, **ended))
        self.settle(saga, spec, index, phase, outcome, retryable=False, retry_after_ms=None, result=result, error=error)

    def watchdog_s(self, step_spec: StepSpec) -> float:
        """How long an attempt may go without a report before it counts as timed out."""
        limit_s = step_spec.timeout_ms / 1000 if step_spec.timeout_ms else self.settings.step_watchdog_s
        return limit_s + self.settings.watchdog_grace_s

    def attempt_deadline(self, step_spec: StepSpec) -> datetime:
        """When an attempt of a handler step dispatched now times out without a report."""
        return self.now + timedelta(seconds=self.watchdog_s(step_spec))

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
    ) -> None:
        """Write the dispatch of one attempt (or of one member of a fan-out's attempt) to the outbox."""
        step_spec = spec.steps[index]
        assert step_spec.capability is not None
        handler = step_spec.handler if phase is Phase.forward else step_spec.compensate
        assert handler is not None
        dispatch = StepDispatch(
            saga_id=saga.id,
            template=spec.name,
            version=spec.version,
            step_index=index,
            step=step_spec.name,
            handler=handler,
            capability=step_spec.capability,
            phase=phase,
            attempt=attempt_no,
            idempotence_key=idempotence_key(saga, spec, step_spec, phase, member),
            mutex_scope=scope,
            fencing_token=token,
            input=saga.input,
            results=saga.results,
            timeout_ms=step_spec.timeout_ms,
            dispatched_at=self.now,
            expires_at=self.attempt_deadline(step_spec),
            member=member,
            each=each,
        )
        task_id = f"{saga.id}-{index}-{phase.value[0]}{attempt_no}" + (f"-{member}" if member is not None else "")
        shadow = handler if phase is Phase.forward else f"{handler} (compensating {step_spec.name})"
        self._outbox_rows.append(
            {
                "queue": keys.capability_queue(step_spec.capability),
                "payload": {
                    "task_id": task_id,
                    "shadow": shadow if member is None else f"{shadow} [{member}]",
                    "timeout_ms": step_spec.timeout_ms,
                    "body": dispatch.model_dump(mode="json"),
                },
                "created_at": self.now,
                "publish_count": 0,
            }
        )

    def _schedule_dispatch(self, saga: SagaRun, index: int, phase: Phase, attempt_no: int, delay_ms: int) -> None:
        self.set_timer(TIMER_DISPATCH, saga.id, index, phase, attempt_no, delay_ms)

    def set_timer(self, kind: str, saga_id: str, index: int, phase: Phase, attempt_no: int, delay_ms: float) -> None:
        self.add_timer(
            timer_key(kind, saga_id, index, phase, attempt_no),
            kind,
            saga_id,
            {"index": index, "phase": phase.value, "attempt": attempt_no},
            self.now + timedelta(milliseconds=delay_ms),
        )

    def add_timer(self, key: str, kind: str, saga_id: str, payload: dict[str, Any], due_at: datetime) -> None:
        self._timer_rows.append(
            {"key": key, "kind": kind, "saga_id": saga_id, "payload": payload, "due_at": due_at, "created_at": self.now}
        )

    def cancel_timer(self, key: str) -> None:
        self._cancelled_timers.append(key)
