"""What the saga engine reads and writes beyond the saga it holds: the port (:class:`SagaStore`)
and its SQL adapter (:class:`SqlSagaStore`).

The engine's decisions change the saga run and its step runs (locked, loaded by the caller) and
ask for effects through the unit of work; everything else it needs (a fencing token, the
work items a step waits on, a fan-out's members, a webhook event, a remediation item) it asks of
a store. The SQL adapter does it in the caller's transaction; a store of plain lists lets the
decisions be unit-tested without a database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from models.enums import Outcome, Phase
from models.lifecycles import LIFECYCLES
from models.principal import ALL_TENANTS
from models.sla import BreachAction
from models.step_item import WorkItemStepSpec
from models.tables import (
    FENCING_SEQUENCE,
    GLOBAL_SCOPE,
    TIMERS,
    FanOutMember,
    FencingCounter,
    SagaRun,
    StepAttempt,
)
from models.template import TemplateSpec
from models.work_tables import WorkItem
from orchestrator.sagas.clocks import CLOCK_KINDS
from orchestrator.sagas.pause_book import PauseBook, Pauses, book_of
from orchestrator.work import compensations, links, webhooks
from orchestrator.work.sla import actions as item_sla

# A member whose outcome is one of these may have had its effect.
MAYBE_DONE = (Outcome.succeeded, Outcome.running, Outcome.timed_out, Outcome.lost, Outcome.cancelled)


class SagaStore(Protocol):
    """What the engine reads and writes besides the saga run it holds (see the module)."""

    def fencing_token(self) -> int: ...

    def pauses(self, max_age_s: float) -> Pauses:
        """The templates and capabilities paused, as known at most ``max_age_s`` ago."""

    def shift_clocks(self, saga_id: str, by: timedelta, *, horizon: datetime, parked: bool) -> None:
        """Move the saga's stored clock timers by ``by``: those due after ``horizon``
        (``parked``), or those due by then (:mod:`orchestrator.sagas.clocks`)."""

    def emit(self, saga: SagaRun, event: str, payload: dict[str, Any], now: datetime) -> None:
        """Queue a webhook event about the saga in the transaction (for its tenant's webhooks)."""

    def open_items(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt: int,
        item_spec: WorkItemStepSpec,
        now: datetime,
        members: list[tuple[int, Any]] | None,
    ) -> list[str]:
        """Open the work item(s) of a step attempt (one, or one per fan-out member); their ids.
        Raises ``ItemSpecError`` or an ``OrchestratorError`` when the saga's data cannot make them."""

    def item_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[WorkItem]: ...

    def items_done(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        """A fan-out of work items: the members whose items were done in its last forward attempt."""

    def cancel_items(self, saga_id: str, index: int, phase: Phase, attempt: int, reason: str) -> int: ...

    def fan_out_member(
        self, saga_id: str, index: int, phase: Phase, attempt: int, member: int
    ) -> FanOutMember | None: ...

    def fan_out_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[FanOutMember]: ...

    def members_to_undo(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        """A fan-out of handlers: the members that did (or may have done) their work in its last
        forward attempt."""

    def running_attempts(self, saga_id: str, index: int, phase: Phase) -> list[StepAttempt]: ...

    def last_attempt(self, saga_id: str, index: int, phase: Phase) -> int:
        """The highest attempt number the step has had in ``phase`` (0: none)."""

    def waited_on(self, saga_id: str) -> list[WorkItem]:
        """The open work items the saga waits on now, row-locked, in id order."""

    def act_on_item(self, item: WorkItem, action: BreachAction, to: str | None, now: datetime, *, why: str) -> None:
        """One of the SLA breach actions, on a work item."""

    def open_remediation(
        self, saga: SagaRun, step: str, attempt: int, error: str, tenant: str, now: datetime
    ) -> str: ...

    def close_remediations(self, saga: SagaRun, actor: str, reason: str) -> list[str]:
        """Close the saga's open remediation items (its compensation is retried); their ids."""

    def open_follow_up(self, saga: SagaRun, now: datetime, **fields: Any) -> str:
        """An item for a person about the saga (a remediation, an approval to continue)."""

    def ended(self, saga: SagaRun, now: datetime) -> None:
        """The saga just ended (its state is set): settle what waits on that (a work item's compensation)."""


class SqlSagaStore:
    """The saga store on the caller's SQL transaction."""

    def __init__(self, session: Session):
        self.session = session
        self._book: PauseBook | None = None

    def pauses(self, max_age_s: float) -> Pauses:
        if self._book is None:
            self._book = book_of(self.session)
        return self._book.current(self.session, max_age_s)

    def shift_clocks(self, saga_id: str, by: timedelta, *, horizon: datetime, parked: bool) -> None:
        # Rare (a pause begins or ends): read the few rows and write them back, which SQLite's
        # dates stored as text and PostgreSQL's both take.
        beyond = TIMERS.c.due_at > horizon if parked else TIMERS.c.due_at <= horizon
        query = select(TIMERS.c.key, TIMERS.c.due_at).where(
            TIMERS.c.saga_id == saga_id, TIMERS.c.kind.in_(CLOCK_KINDS), beyond
        )
        rows = [{"k": key, "due": due + by} for key, due in self.session.execute(query)]
        if rows:
            self.session.execute(
                update(TIMERS).where(TIMERS.c.key == bindparam("k")).values(due_at=bindparam("due")), rows
            )

    def fencing_token(self) -> int:
        """Next fencing token, from the database so it grows even if Redis forgot everything.

        One counter for every scope: a token that grows globally grows per scope, and one counter
        cannot deadlock two transactions that take scopes in different orders. PostgreSQL hands
        them out from a sequence (no row lock at all); SQLite serialises writers anyway.
        """
        session = self.session
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

    def emit(self, saga: SagaRun, event: str, payload: dict[str, Any], now: datetime) -> None:
        # An operator's saga of no tenant is heard by all-tenant webhooks only.
        webhooks.emit(self.session, None if saga.tenant == ALL_TENANTS else saga.tenant, event, payload, now)

    def open_items(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt: int,
        item_spec: WorkItemStepSpec,
        now: datetime,
        members: list[tuple[int, Any]] | None,
    ) -> list[str]:
        if members is None:
            return [links.open_item(self.session, saga, spec, index, phase, attempt, item_spec, now)]
        for n, each in members:
            # All or none: a member that cannot be made fails the step before any item is opened.
            links.checked_item(self.session, saga, spec, index, item_spec, member=n, each=each)
        return [
            links.open_item(self.session, saga, spec, index, phase, attempt, item_spec, now, member=n, each=each)
            for n, each in members
        ]

    def item_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[WorkItem]:
        return links.members(self.session, saga_id, index, phase, attempt)

    def items_done(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        last = self.session.scalar(
            select(func.max(WorkItem.saga_attempt)).where(
                WorkItem.saga_id == saga_id,
                WorkItem.saga_step_index == index,
                WorkItem.saga_phase == Phase.forward.value,
            )
        )
        if last is None:
            return []
        return [
            (i.saga_member or 0, i.meta.get("each"))
            for i in links.members(self.session, saga_id, index, Phase.forward, last)
            if i.deleted_at is None and i.status in LIFECYCLES[i.lifecycle].succeeded
        ]

    def cancel_items(self, saga_id: str, index: int, phase: Phase, attempt: int, reason: str) -> int:
        return links.cancel_items(self.session, saga_id, index, phase, attempt, reason)

    def fan_out_member(self, saga_id: str, index: int, phase: Phase, attempt: int, member: int) -> FanOutMember | None:
        return self.session.get(FanOutMember, (saga_id, index, phase, attempt, member))

    def fan_out_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[FanOutMember]:
        return list(
            self.session.scalars(
                select(FanOutMember)
                .where(
                    FanOutMember.saga_id == saga_id,
                    FanOutMember.step_index == index,
                    FanOutMember.phase == phase,
                    FanOutMember.attempt == attempt,
                )
                .order_by(FanOutMember.member)
            )
        )

    def members_to_undo(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        session = self.session
        last = session.scalar(
            select(func.max(FanOutMember.attempt)).where(
                FanOutMember.saga_id == saga_id, FanOutMember.step_index == index, FanOutMember.phase == Phase.forward
            )
        )
        if last is None:
            return []
        rows = session.scalars(
            select(FanOutMember)
            .where(
                FanOutMember.saga_id == saga_id,
                FanOutMember.step_index == index,
                FanOutMember.phase == Phase.forward,
                FanOutMember.attempt == last,
                FanOutMember.outcome.in_(MAYBE_DONE),
            )
            .order_by(FanOutMember.member)
        )
        return [(r.member, r.each) for r in rows]

    def last_attempt(self, saga_id: str, index: int, phase: Phase) -> int:
        return int(
            self.session.scalar(
                select(func.max(StepAttempt.attempt)).where(
                    StepAttempt.saga_id == saga_id, StepAttempt.step_index == index, StepAttempt.phase == phase
                )
            )
            or 0
        )

    def running_attempts(self, saga_id: str, index: int, phase: Phase) -> list[StepAttempt]:
        return list(
            self.session.scalars(
                select(StepAttempt).where(
                    StepAttempt.saga_id == saga_id,
                    StepAttempt.step_index == index,
                    StepAttempt.phase == phase,
                    StepAttempt.outcome == Outcome.running,
                )
            )
        )

    def waited_on(self, saga_id: str) -> list[WorkItem]:
        return list(
            self.session.scalars(
                select(WorkItem)
                .where(WorkItem.saga_id == saga_id, WorkItem.saga_step_index.is_not(None), WorkItem.is_open.is_(True))
                .order_by(WorkItem.id)
                .with_for_update()
            )
        )

    def act_on_item(self, item: WorkItem, action: BreachAction, to: str | None, now: datetime, *, why: str) -> None:
        item_sla.apply(self.session, item, action, to, now, why=why)

    def open_remediation(self, saga: SagaRun, step: str, attempt: int, error: str, tenant: str, now: datetime) -> str:
        return links.open_remediation(self.session, saga, step, attempt, error, tenant, now)

    def close_remediations(self, saga: SagaRun, actor: str, reason: str) -> list[str]:
        return links.close_remediations(self.session, saga.id, actor, reason)

    def open_follow_up(self, saga: SagaRun, now: datetime, **fields: Any) -> str:
        return links.open_saga_follow_up(self.session, saga, now, **fields)

    def ended(self, saga: SagaRun, now: datetime) -> None:
        compensations.saga_ended(self.session, saga, now)
