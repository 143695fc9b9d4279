"""The saga engine without a database: a saga store of plain lists, and a driver that plays a
saga through the engine one transaction at a time (start, reports, timers, attempt deadlines).

Each move runs an engine on a fresh unit of work and then does what committing it would do:
attempt and fan-out member rows become transient ORM objects the next move can find, armed and
cancelled timers are applied to a dict by key, and the outbox rows are kept in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from config.settings import Settings
from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from models.keytemplate import render_value
from models.lifecycles import LIFECYCLES
from models.messages import ErrorInfo, StepDispatch, StepReport
from models.sla import BreachAction
from models.step_item import WorkItemStepSpec
from models.tables import FanOutMember, SagaRun, StepAttempt, Timer
from models.template import TemplateSpec
from models.work_tables import WorkItem
from orchestrator.errors import InvalidInput
from orchestrator.sagas.engine import SagaEngine, new_step_runs
from orchestrator.sagas.pause_book import NONE, Pauses
from orchestrator.sagas.store import MAYBE_DONE
from orchestrator.storage.unit_of_work import ArmTimer, CancelTimer, DropSagaTimers, UnitOfWork
from orchestrator.work.links import ItemSpecError, item_values

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(step_watchdog_s=600, watchdog_grace_s=30, remediation_tenant="ops")
ITEM_TYPES = ("task", "approval")


@dataclass
class MemoryStore:
    """:class:`~orchestrator.sagas.store.SagaStore` on plain lists (one saga's worth)."""

    attempts: list[StepAttempt] = field(default_factory=list)
    members: list[FanOutMember] = field(default_factory=list)
    items: dict[str, WorkItem] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    item_actions: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    remediations: list[dict[str, Any]] = field(default_factory=list)
    ended_sagas: list[tuple[str, Any]] = field(default_factory=list)
    follow_ups: list[dict[str, Any]] = field(default_factory=list)
    last_token: int = 0

    def fencing_token(self) -> int:
        self.last_token += 1
        return self.last_token

    def pauses(self, max_age_s: float) -> Pauses:
        return NONE  # a template's or capability's pause is tested on real databases

    def shift_clocks(self, saga_id: str, by: timedelta, *, horizon: datetime, parked: bool) -> None:
        pass  # its timers are the scenario's, armed and fired through the unit of work

    def emit(self, saga: SagaRun, event: str, payload: dict[str, Any], now: datetime) -> None:
        self.events.append((event, payload))

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
        if item_spec.type not in ITEM_TYPES:
            raise InvalidInput(f"unknown work-item type {item_spec.type!r}")
        return [
            self._open(saga, spec, index, phase, attempt, item_spec, member, each)
            for member, each in (members if members is not None else [(None, None)])
        ]

    def _open(
        self,
        saga: SagaRun,
        spec: TemplateSpec,
        index: int,
        phase: Phase,
        attempt: int,
        item_spec: WorkItemStepSpec,
        member: int | None,
        each: Any,
    ) -> str:
        values = item_values(saga, spec, spec.steps[index])
        if member is not None:
            values.update(each=each, each_index=member)
        try:
            rendered = render_value({"title": item_spec.title, "payload": item_spec.payload}, values)
        except ValueError as exc:
            raise ItemSpecError(str(exc)) from exc
        item_id = f"item:{saga.id}:{index}:{phase.value}:{attempt}" + (f":{member}" if member is not None else "")
        if item_id not in self.items:
            self.items[item_id] = WorkItem(
                id=item_id,
                tenant=item_spec.tenant,
                type=item_spec.type,
                lifecycle="step",
                status=LIFECYCLES["step"].initial,
                is_open=True,
                title=rendered["title"],
                payload=rendered["payload"],
                meta={"member": member, "each": each} if member is not None else {},
                result=None,
                deleted_at=None,
                saga_id=saga.id,
                saga_step=spec.steps[index].name,
                saga_step_index=index,
                saga_phase=phase.value,
                saga_attempt=attempt,
                saga_member=member,
            )
        return item_id

    def _items_of(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[WorkItem]:
        found = [
            i
            for i in self.items.values()
            if (i.saga_id, i.saga_step_index, i.saga_phase, i.saga_attempt) == (saga_id, index, phase.value, attempt)
        ]
        return sorted(found, key=lambda i: i.saga_member or 0)

    def item_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[WorkItem]:
        return self._items_of(saga_id, index, phase, attempt)

    def items_done(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        tried = [
            i.saga_attempt or 0 for i in self.items.values() if i.saga_step_index == index and i.saga_phase == "forward"
        ]
        if not tried:
            return []
        return [
            (i.saga_member or 0, i.meta.get("each"))
            for i in self._items_of(saga_id, index, Phase.forward, max(tried))
            if i.status in LIFECYCLES["step"].succeeded
        ]

    def cancel_items(self, saga_id: str, index: int, phase: Phase, attempt: int, reason: str) -> int:
        still_open = [i for i in self._items_of(saga_id, index, phase, attempt) if i.is_open]
        for item in still_open:
            item.status, item.is_open, item.reason = "cancelled", False, reason
            self.cancelled.append((item.id, reason))
        return len(still_open)

    def fan_out_member(self, saga_id: str, index: int, phase: Phase, attempt: int, member: int) -> FanOutMember | None:
        wanted = (saga_id, index, phase, attempt, member)
        return next(
            (m for m in self.members if (m.saga_id, m.step_index, m.phase, m.attempt, m.member) == wanted), None
        )

    def fan_out_members(self, saga_id: str, index: int, phase: Phase, attempt: int) -> list[FanOutMember]:
        wanted = (saga_id, index, phase, attempt)
        rows = [m for m in self.members if (m.saga_id, m.step_index, m.phase, m.attempt) == wanted]
        return sorted(rows, key=lambda m: m.member)

    def members_to_undo(self, saga_id: str, index: int) -> list[tuple[int, Any]]:
        tried = [m.attempt for m in self.members if m.step_index == index and m.phase is Phase.forward]
        if not tried:
            return []
        rows = self.fan_out_members(saga_id, index, Phase.forward, max(tried))
        return [(m.member, m.each) for m in rows if m.outcome in MAYBE_DONE]

    def running_attempts(self, saga_id: str, index: int, phase: Phase) -> list[StepAttempt]:
        return [
            a
            for a in self.attempts
            if (a.saga_id, a.step_index, a.phase) == (saga_id, index, phase) and a.outcome is Outcome.running
        ]

    def waited_on(self, saga_id: str) -> list[WorkItem]:
        waited = [
            i for i in self.items.values() if i.saga_id == saga_id and i.is_open and i.saga_step_index is not None
        ]
        return sorted(waited, key=lambda i: i.id)

    def act_on_item(self, item: WorkItem, action: BreachAction, to: str | None, now: datetime, *, why: str) -> None:
        self.item_actions.append((item.id, action, to, why))

    def open_remediation(self, saga: SagaRun, step: str, attempt: int, error: str, tenant: str, now: datetime) -> str:
        self.remediations.append({"saga": saga.id, "step": step, "error": error, "tenant": tenant})
        return f"remediation-{len(self.remediations)}"

    def ended(self, saga: SagaRun, now: datetime) -> None:
        self.ended_sagas.append((saga.id, saga.state))

    def last_attempt(self, saga_id: str, index: int, phase: Phase) -> int:
        numbers = [a.attempt for a in self.attempts if a.step_index == index and a.phase == phase]
        return max(numbers, default=0)

    def close_remediations(self, saga: SagaRun, actor: str, reason: str) -> list[str]:
        closed = [f"remediation-{n + 1}" for n, r in enumerate(self.remediations) if not r.get("closed")]
        for r in self.remediations:
            r["closed"] = True
        return closed

    def open_follow_up(self, saga: SagaRun, now: datetime, **fields: Any) -> str:
        self.follow_ups.append({"saga": saga.id, **fields})
        return f"follow-up-{len(self.follow_ups)}"


def template(*steps: dict[str, Any], **extra: Any) -> TemplateSpec:
    """A template of the given steps (``extra``: deadline_ms, sla, ...)."""
    return TemplateSpec.model_validate({"name": "unit.saga", "version": "1.0.0", "steps": list(steps), **extra})


def handler(name: str, *, undo: bool = True, **extra: Any) -> dict[str, Any]:
    """A handler step named ``name`` on capability ``cap``, with a compensation ``undo_<name>``."""
    return (
        {"name": name, "capability": "cap", "handler": name} | ({"compensate": f"undo_{name}"} if undo else {}) | extra
    )


def work_item(name: str, title: str = "Do {input.tag}", **extra: Any) -> dict[str, Any]:
    """A work-item step offered to the group ``people`` of tenant ``acme``."""
    item = {"type": "task", "title": title, "tenant": "acme", "offer": {"type": "human", "group": "people"}}
    return {"name": name, "kind": "work_item", "work_item": item} | extra


def retry(max_attempts: int = 3, initial_ms: int = 100, max_ms: int = 10_000) -> dict[str, Any]:
    """A retry policy without jitter, so delays are exact."""
    return {"max_attempts": max_attempts, "initial_ms": initial_ms, "max_ms": max_ms, "jitter": 0.0}


class Scenario:
    """One saga run played through the engine, one transaction per move."""

    def __init__(
        self, spec: TemplateSpec, input: dict[str, Any] | None = None, *, saga_id: str = "s-1", rand: float = 0.5
    ):
        self.spec = spec
        self.now = T0
        self.rand = rand
        self.store = MemoryStore()
        self.saga = SagaRun(
            id=saga_id,
            template_name=spec.name,
            template_version=spec.version,
            state=SagaState.running,
            input=input or {},
            input_hash="-",
            results={},
            sla_events=[],
            sla_breach_count=0,
            created_at=self.now,
            updated_at=self.now,
        )
        self.saga.steps = new_step_runs(spec)
        self.timers: dict[str, Timer] = {}
        self.sent: list[dict[str, Any]] = []  # every outbox row written, in order
        self.last_sent: list[dict[str, Any]] = []  # the outbox rows of the last move
        self.dropped = 0  # reports that found no running attempt (duplicates, stale)

    # -- moves ---------------------------------------------------------------------------------

    def start(self) -> Scenario:
        self._move(lambda engine: engine.start(self.saga, self.spec))
        return self

    def report(
        self,
        index: int,
        outcome: Outcome = Outcome.succeeded,
        *,
        phase: Phase = Phase.forward,
        attempt: int | None = None,
        member: int | None = None,
        retryable: bool = True,
        retry_after_ms: int | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> bool:
        """A worker's report on the step's latest attempt (or ``attempt``), as the coordinator
        applies it: dropped (False) unless that attempt is still running."""
        number = attempt if attempt is not None else self.latest(index, phase).attempt
        found = self.attempt(index, phase, number)
        if found is None or found.outcome is not Outcome.running:
            self.dropped += 1
            return False
        report = StepReport(
            saga_id=self.saga.id,
            step_index=index,
            phase=phase,
            attempt=number,
            outcome=outcome,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            error=ErrorInfo(type="Boom", message=error or "it broke") if outcome is not Outcome.succeeded else None,
            result=result,
            worker="w-1",
            member=member,
        )
        self._move(lambda engine: engine.on_report(self.saga, self.spec, report, found))
        return True

    def succeed(self, *indexes: int, phase: Phase = Phase.forward) -> None:
        """Each step's latest attempt succeeds, in turn; its result is ``{"step": name}``."""
        for index in indexes:
            assert self.report(index, phase=phase, result={"step": self.spec.steps[index].name})

    def finish_item(self, item_id: str, status: str = "done", result: Any = None) -> bool:
        """A work item the saga waits on ends; its report comes back as the link sends it."""
        item = self.store.items[item_id]
        item.status, item.is_open, item.result = status, False, result if status == "done" else None
        assert item.saga_step_index is not None and item.saga_attempt is not None
        done = status in LIFECYCLES["step"].succeeded
        return self.report(
            item.saga_step_index,
            Outcome.succeeded if done else Outcome.failed,
            phase=Phase(item.saga_phase or Phase.forward.value),
            attempt=item.saga_attempt,
            member=item.saga_member,
            retryable=False,
            result=result if done else None,
            error=None if done else f"work item {item_id} ended {status}",
        )

    def fire(self, key: str) -> None:
        """The timer ``key`` is due: the clock moves to it (never back) and the timer loop fires it."""
        timer = self.timers.pop(key)
        self.now = max(self.now, timer.due_at)
        self.fire_timer(timer)

    def fire_timer(self, timer: Timer) -> None:
        """Fire a timer object as the timer loop would (whether or not it is still armed)."""
        self._move(lambda engine: engine.on_timer(self.saga, self.spec, timer))

    def fire_retry(self, index: int, phase: Phase = Phase.forward) -> None:
        """Fire the (one) retry timer armed for the step."""
        (key,) = [k for k, t in self.timers.items() if t.kind == TimerKind.dispatch and t.payload["index"] == index]
        assert self.timers[key].payload["phase"] == phase.value
        self.fire(key)

    def time_out(self, index: int, phase: Phase = Phase.forward) -> None:
        """The step's running attempt passes its deadline (the clock moves there)."""
        (attempt,) = self.store.running_attempts(self.saga.id, index, phase)
        assert attempt.deadline_at is not None
        self.now = max(self.now, attempt.deadline_at)
        self._move(lambda engine: engine.on_deadline(self.saga, self.spec, attempt))

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)

    def _move(self, apply: Callable[[SagaEngine], None]) -> None:
        uow = UnitOfWork()
        apply(SagaEngine(uow, self.store, SETTINGS, self.now, lambda: self.rand))
        self._commit(uow)

    def _commit(self, uow: UnitOfWork) -> None:
        self.store.attempts += [StepAttempt(**row) for row in uow.attempts]
        self.store.members += [FanOutMember(**row) for row in uow.members]
        for change in uow.timer_changes:
            if isinstance(change, ArmTimer):
                self.timers[change.row["key"]] = Timer(**change.row)
            elif isinstance(change, CancelTimer):
                self.timers.pop(change.key, None)
            elif isinstance(change, DropSagaTimers):
                self.timers = {k: t for k, t in self.timers.items() if t.saga_id != change.saga_id}
        self.last_sent = [row["payload"] for row in uow.outbox_rows]
        self.sent += self.last_sent

    # -- reading -------------------------------------------------------------------------------

    def state(self) -> SagaState:
        """The saga's state (a call, so a type checker does not keep it narrowed between moves)."""
        return self.saga.state

    def step_states(self) -> list[StepState]:
        return [s.state for s in self.saga.steps]

    def attempt(self, index: int, phase: Phase, number: int) -> StepAttempt | None:
        wanted = (index, phase, number)
        return next((a for a in self.store.attempts if (a.step_index, a.phase, a.attempt) == wanted), None)

    def latest(self, index: int, phase: Phase = Phase.forward) -> StepAttempt:
        return max(
            (a for a in self.store.attempts if (a.step_index, a.phase) == (index, phase)), key=lambda a: a.attempt
        )

    def attempts_of(self, index: int, phase: Phase = Phase.forward) -> list[StepAttempt]:
        return [a for a in self.store.attempts if (a.step_index, a.phase) == (index, phase)]

    def dispatches(self, rows: list[dict[str, Any]] | None = None) -> list[StepDispatch]:
        """The step dispatches among ``rows`` (default: every outbox row so far), parsed."""
        return [StepDispatch.model_validate(row["body"]) for row in (self.sent if rows is None else rows)]

    def moves(self) -> list[tuple[str, str, int]]:
        """Every dispatch so far as (step, phase, attempt)."""
        return [(d.step, d.phase.value, d.attempt) for d in self.dispatches()]

    def timer_kinds(self) -> list[str]:
        return sorted(t.kind for t in self.timers.values())

    def event_names(self) -> list[str]:
        return [name for name, _ in self.store.events]

    def open_items(self, index: int | None = None) -> list[WorkItem]:
        return [i for i in self.store.items.values() if i.is_open and (index is None or i.saga_step_index == index)]
