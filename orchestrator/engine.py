"""Moves sagas forward inside one transaction: dispatch, record outcomes, retry, compensate.

Every method runs under the saga's row lock (see :func:`orchestrator.db.lock_sagas`) and only
writes rows: the messages it causes go to the outbox in the same transaction and are published
by the caller after commit (invariant 1).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from config import keys
from config.settings import Settings
from models.enums import Outcome, Phase, SagaState, StepState
from models.keytemplate import render, render_value
from models.lifecycles import LIFECYCLES
from models.messages import StepDispatch, StepReport
from models.step_item import WorkItemStepSpec
from models.tables import (
    ATTEMPTS,
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
from models.work_tables import WorkItem
from orchestrator import webhooks
from orchestrator.errors import OrchestratorError
from orchestrator.planner import GiveUp, after_failure, next_compensation, outcome_unknown
from orchestrator.work.saga_items import (
    ItemSpecError,
    cancel_items,
    item_values,
    members,
    open_item,
    open_remediation,
)

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


TIMER_DISPATCH = "dispatch"
TIMER_WATCHDOG = "watchdog"
TIMER_SAGA_DEADLINE = "saga_deadline"


def step_values(saga: SagaRun, spec: TemplateSpec, step: StepSpec) -> dict[str, Any]:
    """What a key template such as ``order:{input.order_id}`` may refer to."""
    return {"input": saga.input, "saga_id": saga.id, "step": step.name, "template": spec.name, "version": spec.version}


def idempotence_key(saga: SagaRun, spec: TemplateSpec, step: StepSpec, phase: Phase) -> str:
    base = (
        render(step.idempotence_key, step_values(saga, spec, step))
        if step.idempotence_key
        else f"{saga.id}:{step.name}"
    )
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
        self._attempt_rows: list[dict[str, Any]] = []
        self._outbox_rows: list[dict[str, Any]] = []
        self._timer_rows: list[dict[str, Any]] = []
        self._cancelled_timers: list[str] = []
        self._finished: list[str] = []

    # -- entry points ------------------------------------------------------------------------

    def start(self, saga: SagaRun, spec: TemplateSpec) -> None:
        if spec.deadline_ms is not None:
            self._timer_rows.append(
                {
                    "key": f"{TIMER_SAGA_DEADLINE}:{saga.id}",
                    "kind": TIMER_SAGA_DEADLINE,
                    "saga_id": saga.id,
                    "payload": {},
                    "due_at": self.now + timedelta(milliseconds=spec.deadline_ms),
                    "created_at": self.now,
                }
            )
        self._dispatch(saga, spec, 0, Phase.forward)

    def on_report(self, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt) -> None:
        """Apply a worker's report to the attempt it answers (which the caller found running)."""
        if report.member is not None and spec.steps[report.step_index].for_each is not None:
            self._member_report(saga, spec, report, attempt)
            return
        attempt.outcome = Outcome(report.outcome)
        attempt.worker = report.worker[:255] if report.worker else None
        attempt.started_at = report.started_at
        attempt.finished_at = report.finished_at or self.now
        attempt.error = f"{report.error.type}: {report.error.message}" if report.error else None
        self._cancel_timer(_timer_key(TIMER_WATCHDOG, saga.id, report.step_index, report.phase, report.attempt))
        self._settle(
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
            self._saga_deadline(saga, spec)
            return
        index, phase, attempt_no = timer.payload["index"], Phase(timer.payload["phase"]), timer.payload["attempt"]
        step = saga.steps[index]
        if timer.kind == TIMER_DISPATCH:
            # Fire only if nothing was dispatched for this step since the timer was set.
            if step.current_attempt + 1 == attempt_no and self._phase_of(step) is phase:
                self._dispatch(saga, spec, index, phase)
        elif timer.kind == TIMER_WATCHDOG:
            attempt = self.session.scalar(
                select(StepAttempt).where(
                    StepAttempt.saga_id == saga.id,
                    StepAttempt.step_index == index,
                    StepAttempt.phase == phase,
                    StepAttempt.attempt == attempt_no,
                )
            )
            if attempt is not None and attempt.outcome is Outcome.running:
                attempt.outcome = Outcome.timed_out
                attempt.finished_at = self.now
                attempt.error = "TimedOut: no report from a worker before the step's deadline"
                if spec.steps[index].item_for(phase.value) is not None:
                    attempt.error = "TimedOut: the work item was not finished before the step's deadline"
                    cancel_items(self.session, saga.id, index, phase, attempt_no, "the step's deadline passed")
                self._settle(
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

    def _member_report(self, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt) -> None:
        """A member of a fan-out ended. Count them all again (so a duplicate report changes
        nothing) and settle the attempt once the completion policy is met or can no longer be."""
        index, phase = report.step_index, Phase(report.phase)
        step_spec = spec.steps[index]
        items = members(self.session, saga.id, index, phase, report.attempt)
        done = [i for i in items if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded]
        still_open = [i for i in items if i.is_open]
        needed = step_spec.completion.needed(len(items)) if phase is Phase.forward else len(items)
        if len(done) >= needed:
            outcome = Outcome.succeeded
        elif len(done) + len(still_open) < needed:
            outcome = Outcome.failed
        else:
            return  # undecided: the attempt keeps running
        reason = "its fan-out's completion policy was met" if outcome is Outcome.succeeded else "its fan-out failed"
        cancel_items(self.session, saga.id, index, phase, report.attempt, reason)
        done_ids = {i.id for i in done}
        result = [i.result if i.id in done_ids else None for i in items]
        attempt.outcome = outcome
        attempt.worker = f"{len(done)} of {len(items)} work items done"
        attempt.started_at = attempt.dispatched_at
        attempt.finished_at = self.now
        self._cancel_timer(_timer_key(TIMER_WATCHDOG, saga.id, index, phase, report.attempt))
        if outcome is Outcome.succeeded:
            self._settle(
                saga, spec, index, phase, outcome, retryable=False, retry_after_ms=None, result=result, error=None
            )
            return
        attempt.error = f"FanOutFailed: {len(done)} of {len(items)} done, {needed} needed"
        if phase is Phase.forward and done:
            # What the done members did must be undone too: the compensation sees which.
            saga.results = {**saga.results, step_spec.name: result}
        self._settle(
            saga,
            spec,
            index,
            phase,
            outcome,
            retryable=False,
            retry_after_ms=None,
            result=None,
            error=attempt.error,
            compensate_self=bool(done),
        )

    def _saga_deadline(self, saga: SagaRun, spec: TemplateSpec) -> None:
        """The saga ran out of time: stop waiting on the current step and compensate. Once it
        compensates, the deadline no longer applies (undoing must finish)."""
        if saga.state is not SagaState.running:
            return
        current = next((s for s in saga.steps if s.state in (StepState.running, StepState.retry_wait)), None)
        if current is None:
            return
        index = current.index
        step_spec = spec.steps[index]
        error = f"DeadlineExceeded: the saga's deadline of {spec.deadline_ms} ms passed during step {current.name!r}"
        for attempt in self.session.scalars(
            select(StepAttempt).where(
                StepAttempt.saga_id == saga.id,
                StepAttempt.step_index == index,
                StepAttempt.phase == Phase.forward,
                StepAttempt.outcome == Outcome.running,
            )
        ):
            attempt.outcome = Outcome.timed_out
            attempt.finished_at = self.now
            attempt.error = error
            if step_spec.item_for(Phase.forward.value) is not None:
                cancel_items(self.session, saga.id, index, Phase.forward, attempt.attempt, "the saga's deadline passed")
        # A retry that was waiting must not go out any more.
        self._cancel_timer(_timer_key(TIMER_DISPATCH, saga.id, index, Phase.forward, current.current_attempt + 1))
        current.state = StepState.failed
        current.error = error
        current.finished_at = self.now
        saga.error = error
        saga.updated_at = self.now
        # A handler may have done its work before the deadline: undo it too.
        uncertain = index if step_spec.kind == "handler" else None
        self._compensate_below(saga, spec, index + 1 if uncertain is not None else index, uncertain=uncertain)

    def finalize(self) -> None:
        """Write what was batched; call once before commit."""
        # Give every changed row of a table the same SET list, so the flush sends one
        # executemany per table instead of one UPDATE per row (rows of different shapes
        # interleave in primary-key order and would not group).
        for obj in self.session.dirty:
            for column in _UNIFORM_UPDATES.get(type(obj), ()):
                flag_modified(obj, column)
        self.session.flush()  # sagas and steps first: the rows below refer to them
        if self._attempt_rows:
            # One executemany needs one shape: handler and work-item attempts set different columns.
            columns = {key for row in self._attempt_rows for key in row}
            rows = [dict.fromkeys(columns) | row for row in self._attempt_rows]
            self.session.execute(insert(ATTEMPTS), rows)
        if self._outbox_rows:
            ids = self.session.scalars(
                insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True), self._outbox_rows
            ).all()
            self.outbox += [Outgoing(i, r["queue"], r["payload"]) for i, r in zip(ids, self._outbox_rows, strict=True)]
        if self._timer_rows:
            self.session.execute(insert(TIMERS), self._timer_rows)
        if self._cancelled_timers:
            self.session.execute(delete(TIMERS).where(TIMERS.c.key.in_(self._cancelled_timers)))
        if self._finished:
            # A finished saga needs none of its timers, including any written just above.
            self.session.execute(delete(TIMERS).where(TIMERS.c.saga_id.in_(self._finished)))
        for batch in (self._attempt_rows, self._outbox_rows, self._timer_rows, self._cancelled_timers, self._finished):
            batch.clear()

    # -- decisions ---------------------------------------------------------------------------

    def _settle(
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
                self._compensate_below(saga, spec, index)
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
                self._compensate_below(saga, spec, index + 1, uncertain=index)
            else:
                self._compensate_below(saga, spec, index)
        else:
            # Strict order: the steps below stay as they are; a person must look (remediation).
            step.state = StepState.compensation_failed
            saga.error = f"compensation of step {step.name!r} {decision.reason}: {error}"
            self._finish(saga, SagaState.compensation_failed)
            open_remediation(self.session, saga, step.name, error or "-", self.settings.remediation_tenant, self.now)

    def _compensate_below(self, saga: SagaRun, spec: TemplateSpec, below: int, *, uncertain: int | None = None) -> None:
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
            self._open_item(saga, spec, index, phase, attempt_no, item_spec)
            return
        assert step_spec.capability is not None
        scope = render(step_spec.mutex_scope, step_values(saga, spec, step_spec)) if step_spec.mutex_scope else None
        token = issue_fencing_token(self.session) if scope is not None else None
        handler = step_spec.handler if phase is Phase.forward else step_spec.compensate
        assert handler is not None
        deadline_s = (
            step_spec.timeout_ms / 1000 if step_spec.timeout_ms else self.settings.step_watchdog_s
        ) + self.settings.watchdog_grace_s
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
            idempotence_key=idempotence_key(saga, spec, step_spec, phase),
            mutex_scope=scope,
            fencing_token=token,
            input=saga.input,
            results=saga.results,
            timeout_ms=step_spec.timeout_ms,
            dispatched_at=self.now,
            expires_at=self.now + timedelta(seconds=deadline_s),
        )
        self._attempt_rows.append(
            {
                "saga_id": saga.id,
                "step_index": index,
                "step_name": step_spec.name,
                "phase": phase,
                "attempt": attempt_no,
                "outcome": Outcome.running,
                "fencing_token": token,
                "dispatched_at": self.now,
            }
        )
        self._outbox_rows.append(
            {
                "queue": keys.capability_queue(step_spec.capability),
                "payload": {
                    "task_id": f"{saga.id}-{index}-{phase.value[0]}{attempt_no}",
                    "shadow": handler if phase is Phase.forward else f"{handler} (compensating {step_spec.name})",
                    "timeout_ms": step_spec.timeout_ms,
                    "body": dispatch.model_dump(mode="json"),
                },
                "created_at": self.now,
                "publish_count": 0,
            }
        )
        self._set_timer(TIMER_WATCHDOG, saga.id, index, phase, attempt_no, deadline_s * 1000)

    def _open_item(
        self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase, attempt_no: int, item_spec: WorkItemStepSpec
    ) -> None:
        """A person or an agent does this attempt: open its work item and wait, holding no
        worker slot. The item's end comes back as a report; ``timeout_ms`` is its deadline."""
        step_spec = spec.steps[index]
        row: dict[str, Any] = {
            "saga_id": saga.id,
            "step_index": index,
            "step_name": step_spec.name,
            "phase": phase,
            "attempt": attempt_no,
            "outcome": Outcome.running,
            "dispatched_at": self.now,
        }
        try:
            if step_spec.for_each is None:
                opened = [open_item(self.session, saga, spec, index, phase, attempt_no, item_spec, self.now)]
            else:
                opened = [
                    open_item(
                        self.session, saga, spec, index, phase, attempt_no, item_spec, self.now, member=n, each=each
                    )
                    for n, each in self._fan_elements(saga, spec, index, phase)
                ]
        except (ItemSpecError, OrchestratorError) as exc:
            # The saga's data cannot make this item: no retry will change that.
            error = f"WorkItemNotCreated: {getattr(exc, 'message', None) or exc}"
            self._attempt_rows.append({**row, "outcome": Outcome.failed, "error": error, "finished_at": self.now})
            self._settle(
                saga, spec, index, phase, Outcome.failed, retryable=False, retry_after_ms=None, result=None, error=error
            )
            return
        if step_spec.for_each is not None:
            needed = step_spec.completion.needed(len(opened)) if phase is Phase.forward else len(opened)
            if needed == 0 or len(opened) < needed:
                # Nothing to wait for (an empty list), or a policy no list this short can meet.
                ok = needed == 0
                problem = None if ok else f"FanOutFailed: {len(opened)} member(s), {needed} needed"
                outcome = Outcome.succeeded if ok else Outcome.failed
                self._attempt_rows.append({**row, "outcome": outcome, "error": problem, "finished_at": self.now})
                self._settle(
                    saga, spec, index, phase, outcome, retryable=False, retry_after_ms=None, result=[], error=problem
                )
                return
        label = f"work item {opened[0]}" if step_spec.for_each is None else f"{len(opened)} work items"
        self._attempt_rows.append({**row, "worker": label[:255]})
        if step_spec.timeout_ms:
            self._set_timer(TIMER_WATCHDOG, saga.id, index, phase, attempt_no, step_spec.timeout_ms)

    def _fan_elements(self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase) -> list[tuple[int, Any]]:
        """The members of a fan-out: the list's elements going forward; compensating, only the
        members that were done (their compensation undoes what they did)."""
        step_spec = spec.steps[index]
        assert step_spec.for_each is not None
        if phase is Phase.forward:
            elements = render_value(step_spec.for_each, item_values(saga, spec, step_spec))
            if not isinstance(elements, list):
                raise ItemSpecError(f"for_each {step_spec.for_each} is not a list but {type(elements).__name__}")
            return list(enumerate(elements))
        last = self.session.scalar(
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
            for i in members(self.session, saga.id, index, Phase.forward, last)
            if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded
        ]

    def _schedule_dispatch(self, saga: SagaRun, index: int, phase: Phase, attempt_no: int, delay_ms: int) -> None:
        self._set_timer(TIMER_DISPATCH, saga.id, index, phase, attempt_no, delay_ms)

    def _set_timer(self, kind: str, saga_id: str, index: int, phase: Phase, attempt_no: int, delay_ms: float) -> None:
        self._timer_rows.append(
            {
                "key": _timer_key(kind, saga_id, index, phase, attempt_no),
                "kind": kind,
                "saga_id": saga_id,
                "payload": {"index": index, "phase": phase.value, "attempt": attempt_no},
                "due_at": self.now + timedelta(milliseconds=delay_ms),
                "created_at": self.now,
            }
        )

    def _cancel_timer(self, key: str) -> None:
        self._cancelled_timers.append(key)


def _timer_key(kind: str, saga_id: str, index: int, phase: Phase | str, attempt_no: int) -> str:
    return f"{kind}:{saga_id}:{index}:{Phase(phase).value}:{attempt_no}"
