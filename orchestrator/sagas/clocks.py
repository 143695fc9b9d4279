"""A saga's clocks (its deadline and its SLA's timers) stand still while a pause holds it: its own
pause (an operator's control of the saga) or the pause of its template or of the capability its
next step runs on (:mod:`orchestrator.sagas.queue_pauses`).

They are stopped by moving their timers out of reach (:data:`PARKED`) and started again by
moving them back, less the time they stood still, which the saga's ``paused_ms`` adds up. One
``stopped_at`` per saga, whatever the pauses that hold it and however they overlap: the clocks
stop when the first pause begins and start when the last one ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from models.base import utcnow
from models.enums import TimerKind
from models.tables import SagaRun
from orchestrator.storage.unit_of_work import UnitOfWork

# The saga's clocks. (A retry's pause is not a clock: due while paused, its dispatch is held like
# any other.)
CLOCKS = (TimerKind.saga_deadline, TimerKind.saga_sla_warn, TimerKind.saga_sla_breach, TimerKind.saga_sla_escalate)
CLOCK_KINDS = frozenset(kind.value for kind in CLOCKS)
# How far a stopped saga's clock timers are moved out: far enough that none comes due, near
# enough that the date stays valid.
PARKED = timedelta(days=365 * 1000)


class ClockStore(Protocol):
    """Where the saga's clock timers are stored (a :class:`~orchestrator.sagas.store.SagaStore`)."""

    def shift_clocks(self, saga_id: str, by: timedelta, *, horizon: datetime, parked: bool) -> None:
        """Move the saga's stored clock timers by ``by``: those due after ``horizon``
        (``parked``), or those due by then."""


def stopped(saga: SagaRun) -> bool:
    """Whether something holds the saga: its own pause, or a template's or capability's."""
    return saga.paused_at is not None or saga.held_by is not None


def sync_clocks(uow: UnitOfWork, store: ClockStore, saga: SagaRun, now: datetime) -> None:
    """Stop the saga's clocks if a pause holds it now and they run, start them again if none
    does and they stand still (a clock armed while they stood, such as a rerun's deadline, was
    never parked and is left where it is)."""
    horizon = utcnow() + PARKED / 2
    if stopped(saga) and saga.stopped_at is None:
        saga.stopped_at = now
        uow.shift_armed(saga.id, CLOCK_KINDS, PARKED, horizon=horizon, parked=False)
        store.shift_clocks(saga.id, PARKED, horizon=horizon, parked=False)
    elif not stopped(saga) and saga.stopped_at is not None:
        stood = now - saga.stopped_at
        account(saga, now)
        uow.shift_armed(saga.id, CLOCK_KINDS, stood - PARKED, horizon=horizon, parked=True)
        store.shift_clocks(saga.id, stood - PARKED, horizon=horizon, parked=True)


def account(saga: SagaRun, now: datetime) -> None:
    """The clocks start again (or the saga ended): the time they stood still is added up."""
    if saga.stopped_at is not None:
        saga.paused_ms = (saga.paused_ms or 0) + int((now - saga.stopped_at).total_seconds() * 1000)
        saga.stopped_at = None
