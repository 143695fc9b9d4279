"""Statuses, as string enums so they read the same in the database, the API and the CLI."""

from __future__ import annotations

from enum import StrEnum


class SagaState(StrEnum):
    """Where a saga run stands: running forward, compensating, or one of its terminal states."""

    running = "running"
    compensating = "compensating"
    completed = "completed"
    compensated = "compensated"
    compensation_failed = "compensation_failed"
    # An operator cancelled it and what it had done was undone (a failed undo of a cancelled saga
    # ends compensation_failed, as any other).
    cancelled = "cancelled"
    # An operator stopped it where it stood, undoing nothing.
    terminated = "terminated"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_SAGA_STATES


TERMINAL_SAGA_STATES = frozenset(
    {
        SagaState.completed,
        SagaState.compensated,
        SagaState.compensation_failed,
        SagaState.cancelled,
        SagaState.terminated,
    }
)


class SagaControl(StrEnum):
    """What an operator may do to a saga run (each recorded in its audit trail with who and why)."""

    # Stop dispatching its steps and undo what it did, in reverse order.
    cancel = "cancel"
    # Stop where it stands, undoing nothing.
    terminate = "terminate"
    # Dispatch nothing new (what is under way goes on) and stop its deadline and SLA clocks.
    pause = "pause"
    # Dispatch what a pause held back, and start its clocks again where they stopped.
    resume = "resume"
    # Dispatch again the compensation that gave up (after a fix), closing its remediation items.
    retry_compensation = "retry_compensation"
    # Run a saga that ended without completing again, from a step (its input patched, if need be).
    rerun = "rerun"


class StepState(StrEnum):
    """Where one step run stands, forward (pending to succeeded or failed) and through its compensation."""

    pending = "pending"
    running = "running"
    retry_wait = "retry_wait"
    succeeded = "succeeded"
    failed = "failed"
    compensating = "compensating"
    compensated = "compensated"
    compensation_failed = "compensation_failed"


class Phase(StrEnum):
    """Which way a step runs: forward (its handler) or compensate (its undo)."""

    forward = "forward"
    compensate = "compensate"


class Outcome(StrEnum):
    """What became of one attempt of one step."""

    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    # The worker running it died (or the dispatch vanished): counts as an attempt.
    lost = "lost"
    # Past its deadline with no report: counts as an attempt.
    timed_out = "timed_out"
    # Could not start yet (mutex busy, stale fencing token): re-dispatched, not counted.
    deferred = "deferred"
    # An operator cancelled or terminated the saga while it ran: whether it did its work is unknown.
    cancelled = "cancelled"

    @property
    def counts(self) -> bool:
        """Whether this outcome uses up one of the step's attempts."""
        return self is not Outcome.deferred


class PauseKind(StrEnum):
    """What an operator may pause besides one saga: a template, or a capability queue."""

    template = "template"
    capability = "capability"


class TimerKind(StrEnum):
    """Every kind of durable timer, declared once; the timer loop fires each by its handler in
    one table (``orchestrator.service.timers``). An attempt's own deadline is not a timer: it is
    kept on the attempt's row."""

    # Of a saga (fired under the saga's row lock):
    dispatch = "dispatch"  # a retry's next attempt
    saga_deadline = "saga_deadline"  # the whole saga's deadline
    saga_sla_warn = "saga_sla_warn"
    saga_sla_breach = "saga_sla_breach"
    saga_sla_escalate = "saga_sla_escalate"
    # Of a work item (fired under the item's row lock):
    sla_warn = "sla_warn"
    sla_breach = "sla_breach"
    sla_escalate = "sla_escalate"
    lease_expiry = "lease_expiry"
    stall_check = "stall_check"  # the holder's progress, checked against its stall ladder
    item_timeout = "item_timeout"  # timeout_ms from its start
    item_overall_timeout = "item_overall_timeout"  # overall_timeout_ms from its creation
    item_due = "item_due"  # its due_at
    # Of a policy check's validator run (fired under the run's item's row lock, once the item ended too):
    validation_give_up = "validation_give_up"  # a run that never answered is given up
    # Of a tenant (no saga, no item): its nightly traceability validation, re-armed each time it fires.
    trace_validation = "trace_validation"
