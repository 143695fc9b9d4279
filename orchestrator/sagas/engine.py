"""Moves sagas forward inside one transaction: dispatch, record outcomes, retry, compensate.

Every method runs under the saga's row lock (see :func:`orchestrator.storage.db.lock_sagas`) and
only changes the saga run, its step runs and attempts. What it causes (outbox messages, timers,
attempt rows) goes to the transaction's unit of work, written as it commits and published by
the caller afterwards (invariant 1); what it reads or writes beyond the saga goes through a
:class:`~orchestrator.sagas.store.SagaStore`. So the decisions run without a database too: on a
saga run built in memory, a :class:`~orchestrator.storage.unit_of_work.UnitOfWork` of its own
and a store of plain lists.

How a step's attempts start and are reported on depends on its kind
(:mod:`orchestrator.sagas.steps`); what follows from an attempt's outcome is decided here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from config import keys, tracing
from config.settings import Settings
from models.base import transient
from models.enums import TERMINAL_SAGA_STATES, Outcome, Phase, SagaState, StepState, TimerKind
from models.messages import StepDispatch, StepReport
from models.tables import SagaRun, StepAttempt, StepRun, Timer
from models.template import StepSpec, TemplateSpec
from orchestrator.metrics import instruments
from orchestrator.sagas import sla
from orchestrator.sagas.clocks import account, sync_clocks
from orchestrator.sagas.deadlines import saga_deadline
from orchestrator.sagas.keys import idempotence_key, task_id, timer_key
from orchestrator.sagas.planner import GiveUp, after_failure, next_compensation, outcome_unknown
from orchestrator.sagas.steps import kind_of
from orchestrator.sagas.steps.kind import handler_capability
from orchestrator.sagas.store import SagaStore
from orchestrator.storage.unit_of_work import UnitOfWork

TERMINAL = TERMINAL_SAGA_STATES

log = logging.getLogger(__name__)


def new_step_runs(spec: TemplateSpec, saga_id: str | None = None) -> list[StepRun]:
    return [
        transient(
            StepRun,
            saga_id=saga_id,
            index=i,
            name=s.name,
            state=StepState.pending,
            attempts=0,
            compensation_attempts=0,
            current_attempt=0,
            key_rerun=0,
        )
        for i, s in enumerate(spec.steps)
    ]


class SagaEngine:
    """One transaction's worth of saga moves (see the module)."""

    def __init__(
        self,
        uow: UnitOfWork,
        store: SagaStore,
        settings: Settings,
        now: datetime,
        rand: Callable[[], float] = random.random,
    ):
        self.uow = uow
        self.store = store
        self.settings = settings
        self.now = now
        self.rand = rand

    # -- entry points ------------------------------------------------------------------------

    def start(self, saga: SagaRun, spec: TemplateSpec) -> None:
        if spec.deadline_ms is not None:
            self.uow.arm_timer(
                f"{TimerKind.saga_deadline.value}:{saga.id}",
                TimerKind.saga_deadline,
                self.now + timedelta(milliseconds=spec.deadline_ms),
                self.now,
                saga_id=saga.id,
            )
        if spec.sla is not None:
            sla.schedule(self, saga, spec.sla)
        self._dispatch(saga, spec, 0, Phase.forward)

    def on_report(self, saga: SagaRun, spec: TemplateSpec, report: StepReport, attempt: StepAttempt) -> None:
        """Apply a worker's report to the attempt it answers (which the caller found running)."""
        if report.traceparent is not None and report.phase is Phase.forward:
            # The span that ran it: what the step's compensation, if it comes to that, undoes.
            saga.steps[report.step_index].trace_parent = report.traceparent
        kind_of(spec.steps[report.step_index], Phase(report.phase)).on_report(self, saga, spec, report, attempt)

    def on_timer(self, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
        """A timer of the saga is due: fired by its kind (see :data:`SAGA_TIMERS`)."""
        if saga.state in TERMINAL:
            return
        SAGA_TIMERS[TimerKind(timer.kind)](self, saga, spec, timer)

    def on_retry_due(self, saga: SagaRun, spec: TemplateSpec, timer: Timer) -> None:
        """A retry's pause is over: dispatch the next attempt, unless something was dispatched
        for the step since the timer was set, or the step was given up on (a saga deadline or an
        SLA cancel fired in the same batch cancels this timer only as the batch commits)."""
        index, phase, attempt_no = timer.payload["index"], Phase(timer.payload["phase"]), timer.payload["attempt"]
        step = saga.steps[index]
        waiting = StepState.retry_wait if phase is Phase.forward else StepState.compensating
        if step.current_attempt + 1 == attempt_no and step.state is waiting:
            self._dispatch(saga, spec, index, phase)

    def resend(self, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> int:
        """Dispatch a running attempt again, as it was (its dispatch may be lost with a Redis that
        lost its data); how many dispatches were written. A duplicate is harmless: the worker's
        idempotence check finds the attempt running or ended."""
        if saga.state in TERMINAL:
            return 0
        return kind_of(spec.steps[attempt.step_index], Phase(attempt.phase)).resend(self, saga, spec, attempt)

    def on_deadline(self, saga: SagaRun, spec: TemplateSpec, attempt: StepAttempt) -> None:
        """An attempt (found running, under the saga's lock) is past its deadline: it timed out."""
        index, phase = attempt.step_index, Phase(attempt.phase)
        kind = kind_of(spec.steps[index], phase)
        attempt.outcome = Outcome.timed_out
        attempt.finished_at = self.now
        step_spec = spec.steps[index]
        capability = handler_capability(step_spec, phase)
        instruments.step_settled(self.uow, capability, phase, attempt.outcome, attempt.dispatched_at, self.now)
        maybe_done: bool | None = None  # a handler's task may have done its work: unknown
        if step_spec.item_for(phase.value) is not None:
            attempt.error = "TimedOut: the work item was not finished before the step's deadline"
            kind.on_timeout(self, saga, attempt, "the step's deadline passed")
            # Its items are cancelled: only the members of a fan-out that were done did anything.
            maybe_done = step_spec.for_each is not None and bool(self.store.items_done(saga.id, index))
        else:
            attempt.error = "TimedOut: no report from a worker before the step's deadline"
            kind.on_timeout(self, saga, attempt, attempt.error)
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
            compensate_self=maybe_done,
        )

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
        compensate_self: bool | None = None,
    ) -> None:
        """An attempt of step ``index`` ended with ``outcome``: what follows. ``compensate_self``:
        whether the step, if given up, may have done its work and is undone too (None: as the
        outcome says, i.e. when it timed out or was lost)."""
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
                    self.finish(saga, SagaState.completed)
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
            if outcome_unknown(outcome) if compensate_self is None else compensate_self:
                self.compensate_below(saga, spec, index + 1, uncertain=index)
            else:
                self.compensate_below(saga, spec, index)
        else:
            # Strict order: the steps below stay as they are; a person must look (remediation).
            step.state = StepState.compensation_failed
            saga.error = f"compensation of step {step.name!r} {decision.reason}: {error}"
            self.finish(saga, SagaState.compensation_failed)
            self.store.open_remediation(
                saga, step.name, step.current_attempt, error or "-", self.settings.remediation_tenant, self.now
            )

    def compensate_below(self, saga: SagaRun, spec: TemplateSpec, below: int, *, uncertain: int | None = None) -> None:
        if saga.state != SagaState.compensating:
            instruments.compensation(self.uow, "started")
        saga.state = SagaState.compensating
        index = next_compensation(spec.steps, [StepState(s.state) for s in saga.steps], below, uncertain=uncertain)
        if index is None:
            # Undone in full: by an operator's cancel, or after a step gave up.
            self.finish(saga, SagaState.cancelled if saga.cancelled_at is not None else SagaState.compensated)
            return
        step = saga.steps[index]
        step.state = StepState.compensating
        # Numbered on from an earlier run's compensation attempts of the step, if it was rerun.
        step.current_attempt = self.store.last_attempt(saga.id, index, Phase.compensate) if saga.reruns else 0
        self._dispatch(saga, spec, index, Phase.compensate)

    def compensate_again(self, saga: SagaRun, spec: TemplateSpec, index: int) -> None:
        """Dispatch the compensation of step ``index`` again, with its attempts counted afresh
        (an operator retries a compensation that gave up): a compensation run of its own."""
        instruments.compensation(self.uow, "started")
        saga.state = SagaState.compensating
        saga.finished_at = None
        saga.updated_at = self.now
        step = saga.steps[index]
        step.state = StepState.compensating
        step.compensation_attempts = 0
        step.error = None
        step.finished_at = None
        self._dispatch(saga, spec, index, Phase.compensate)

    def dispatch_step(self, saga: SagaRun, spec: TemplateSpec, index: int) -> None:
        """Dispatch step ``index`` forward (an operator reruns the saga from it)."""
        self._dispatch(saga, spec, index, Phase.forward)

    def send_held(self, saga: SagaRun, spec: TemplateSpec) -> None:
        """The saga, or the template's or capability's pause that held it, was resumed: dispatch
        what was held back, if anything (held again if another pause still holds it), and start
        its clocks again if nothing holds it any more."""
        held, saga.held = saga.held, None
        saga.held_by = saga.held_at = None
        if held is not None:
            self._dispatch(saga, spec, held["index"], Phase(held["phase"]))
        sync_clocks(self.uow, self.store, saga, self.now)

    def finish(self, saga: SagaRun, state: SagaState) -> None:
        if state in (SagaState.compensated, SagaState.cancelled, SagaState.compensation_failed):
            # A cancelled saga's compensation succeeded: counted as compensated.
            outcome = SagaState.compensation_failed if state is SagaState.compensation_failed else SagaState.compensated
            instruments.compensation(self.uow, outcome.value)
        saga.state = state
        saga.finished_at = self.now
        saga.updated_at = self.now
        # What was under way when it was paused ended it: a pause of the saga ends with it, and
        # its clocks go with its timers (below), so a rerun of it is not held.
        saga.paused_at = None
        account(saga, self.now)
        saga.held = saga.held_by = saga.held_at = None
        # One line per saga that ends; the ordinary end only at DEBUG (it is the common case).
        log.log(
            logging.DEBUG if state is SagaState.completed else logging.INFO,
            "saga %s ended %s%s",
            saga.id,
            state.value,
            f": {saga.error}" if saga.error else "",
            extra={"saga_state": state.value},
        )
        self.uow.drop_saga_timers(saga.id)
        self.store.ended(saga, self.now)
        self.store.emit(
            saga,
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

    # -- effects -----------------------------------------------------------------------------

    def _dispatch(self, saga: SagaRun, spec: TemplateSpec, index: int, phase: Phase) -> None:
        if saga.paused_at is not None:
            # Paused: nothing new goes out; resuming sends it (a saga runs one step at a time).
            saga.held = {"index": index, "phase": phase.value}
            return
        pauses = self.store.pauses(self.settings.pause_refresh_s)
        if pauses:
            by = pauses.holding(saga.tenant, saga.template_name, handler_capability(spec.steps[index], phase))
            if by is not None:
                # Its template or capability is paused: held as by a pause of the saga, its
                # clocks stopped, until that pause is resumed.
                saga.held = {"index": index, "phase": phase.value}
                saga.held_by, saga.held_at = by, self.now
                saga.updated_at = self.now
                sync_clocks(self.uow, self.store, saga, self.now)
                return
        step = saga.steps[index]
        step.current_attempt += 1
        if phase is Phase.forward:
            step.state = StepState.running
            step.started_at = step.started_at or self.now
        kind_of(spec.steps[index], phase).dispatch(self, saga, spec, index, phase, step.current_attempt)

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
        self.uow.attempts.append(self.attempt_row(saga, spec, index, phase, attempt_no, **ended))
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
        expires_at: datetime | None = None,
    ) -> None:
        """Write the dispatch of one attempt (or of one member of a fan-out's attempt) to the outbox."""
        step_spec = spec.steps[index]
        assert step_spec.capability is not None
        handler = step_spec.handler if phase is Phase.forward else step_spec.compensate
        assert handler is not None
        queue = keys.capability_queue(step_spec.capability)
        traceparent = undoes = None
        if tracing.enabled():
            traceparent, undoes = self._trace_dispatch(saga, spec, index, phase, attempt_no, member, queue)
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
            expires_at=expires_at or self.attempt_deadline(step_spec),
            member=member,
            each=each,
            tenant=saga.tenant,
            traceparent=traceparent,
            undoes=undoes,
        )
        shadow = handler if phase is Phase.forward else f"{handler} (compensating {step_spec.name})"
        self.uow.send(
            queue,
            {
                "task_id": task_id(saga.id, index, phase, attempt_no, member),
                "shadow": shadow if member is None else f"{shadow} [{member}]",
                "timeout_ms": step_spec.timeout_ms,
                "body": dispatch.model_dump(mode="json"),
            },
            self.now,
        )

    def _trace_dispatch(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt_no: int,
        member: int | None,
        queue: str,
    ) -> tuple[str | None, str | None]:
        """The span of writing a dispatch, in the saga's trace: the traceparent the worker's span
        continues, and for a compensation the forward attempt's span it undoes (linked)."""
        step_spec = spec.steps[index]
        forward = phase is Phase.forward
        undoes = None if forward else saga.steps[index].trace_parent
        attributes: dict[str, str | int] = {
            "workyard.saga_id": saga.id,
            "workyard.step": step_spec.name,
            "workyard.step_index": index,
            "workyard.phase": phase.value,
            "workyard.attempt": attempt_no,
            "messaging.destination.name": queue,
        }
        if member is not None:
            attributes["workyard.member"] = member
        name = "step dispatch" if forward else "compensation dispatch"
        with tracing.span(
            name, kind=tracing.PRODUCER, trace_of=saga.trace_parent, links=[undoes], attributes=attributes
        ):
            return tracing.current_traceparent(), undoes

    def _schedule_dispatch(self, saga: SagaRun, index: int, phase: Phase, attempt_no: int, delay_ms: int) -> None:
        self.uow.arm_timer(
            timer_key(TimerKind.dispatch, saga.id, index, phase, attempt_no),
            TimerKind.dispatch,
            self.now + timedelta(milliseconds=delay_ms),
            self.now,
            saga_id=saga.id,
            payload={"index": index, "phase": phase.value, "attempt": attempt_no},
        )


# The saga's timer kinds and what fires them, under the saga's row lock.
SAGA_TIMERS: dict[TimerKind, Callable[[SagaEngine, SagaRun, TemplateSpec, Timer], None]] = {
    TimerKind.dispatch: SagaEngine.on_retry_due,
    TimerKind.saga_deadline: lambda engine, saga, spec, _timer: saga_deadline(engine, saga, spec),
    TimerKind.saga_sla_warn: sla.warn,
    TimerKind.saga_sla_breach: sla.breach,
    TimerKind.saga_sla_escalate: sla.escalate,
}
