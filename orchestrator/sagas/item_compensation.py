"""A work item's compensation plan (the spec's §6), checked against the saga templates and run
as a saga.

**How an action maps to a handler.** Workers register handlers with ``@step`` on hosts the
orchestrator cannot see, so the orchestrator knows a handler by the saga templates that name it:
an ``action_id`` must be the ``compensate`` (or the ``handler``) of a step in a template the
item's tenant may run (its own or a shared one), and it runs on that step's capability queue
(``cap.<capability>``). A ``target_step`` must be ``*`` or a step of the item's run: a step of its
saga's template (an item a saga waits on) or of the template that registers the action.

**The run.** ``compensate`` writes a template of its own (``workitem-compensation.<digest>``,
version 1.0.0, one per distinct plan and tenant: the same plan reuses it) whose steps are the
plan's applicable actions in reverse order of their listing, each retried by the plan's retry
policy, and starts a saga of it in the same transaction as the ``work_item_compensations`` row
that ties it to the item. The saga engine runs it as any other (outbox, workers, reports, retry
timers); its end settles the item (``orchestrator.work.compensations``).

Which actions apply: for an item that was done, all of them (undo the whole item); for one that
failed, those ``on: any_failure`` and those ``on: failure_of`` whose target is the failed step
(the body's ``failed_step``, else the saga step the item answered) or ``*``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import Settings
from models.base import utcnow
from models.enums import TERMINAL_SAGA_STATES
from models.item_plans import CompensationPlan, CompensationStep
from models.lifecycles import LIFECYCLES
from models.principal import Principal, Scope
from models.tables import SagaRun
from models.template import RetryPolicy, StepSpec, TemplateSpec
from models.work_tables import WorkItem, WorkItemCompensation
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.submit import input_hash, new_rows, start_saga
from orchestrator.sagas.templates import get_template, list_templates, register_template
from orchestrator.storage.db import SessionFactory
from orchestrator.storage.unit_of_work import Outgoing
from orchestrator.work import audit
from orchestrator.work.access import require
from orchestrator.work.compensations import TEMPLATE_PREFIX, RunStatus
from orchestrator.work.views import load_item

TEMPLATE_VERSION = "1.0.0"
# Where the input of a compensation run names its item (and what its actions' keys are made of).
ITEM_KEY = "work_item_id"
# The longest backoff the plan's doubling reaches, and a handler attempt's timeout: the engine's.
MAX_BACKOFF_MS = 300_000


@dataclass(frozen=True)
class Action:
    """Where an action id runs, and the steps of the template that registers it."""

    capability: str
    template: str
    steps: frozenset[str]


@dataclass(frozen=True)
class Started:
    """A compensation run: its row, whether this call started it, and what to publish."""

    run: WorkItemCompensation
    created: bool
    outbox: list[Outgoing]


def known_actions(session: Session, tenant: str) -> dict[str, Action]:
    """Every compensation handler (a step's ``compensate``) the tenant's templates name; the latest
    version of each template wins. Only undo handlers: a plan is written by whoever may write the
    item (``work:write``), and a step's forward handler run with the item's payload would be a
    saga's side effect started without ``sagas:write``."""
    found: dict[str, Action] = {}
    for row in list_templates(session, tenant=tenant):
        if row.name.startswith(TEMPLATE_PREFIX):
            continue  # ours: they only repeat what other templates registered
        spec = TemplateSpec.model_validate(row.spec)
        names = frozenset(step.name for step in spec.steps)
        for step in spec.steps:
            if step.capability is not None and step.compensate is not None:
                found[step.compensate] = Action(step.capability, spec.name, names)
    return found


def check_plan(
    session: Session, tenant: str, plan: CompensationPlan | None, *, run_steps: frozenset[str] = frozenset()
) -> None:
    """Every action id maps to a handler, and every target step names a step of the item's run
    (``run_steps``: its saga's template's) or of the action's template; else a 422 naming each."""
    if plan is None:
        return
    actions = known_actions(session, tenant)
    problems: list[dict[str, str]] = []
    for n, step in enumerate(plan.steps):
        action = actions.get(step.action_id)
        if action is None:
            problems.append(
                {
                    "path": f"compensation.steps.{n}.action_id",
                    "message": f"no saga template of tenant {tenant!r} registers a compensation (a step's "
                    f"compensate) named {step.action_id!r}",
                }
            )
            continue
        if step.target_step != "*" and step.target_step not in run_steps | action.steps:
            problems.append(
                {
                    "path": f"compensation.steps.{n}.target_step",
                    "message": f"{step.target_step!r} is not a step of the item's run or of template "
                    f"{action.template!r}; use one of {', '.join(sorted(run_steps | action.steps))} or *",
                }
            )
    if problems:
        raise InvalidInput("the compensation plan is not valid: " + problems[0]["message"], details=problems)


def check_item_plan(sessions: SessionFactory, tenant: str, plan: CompensationPlan | None) -> None:
    """:func:`check_plan` for an item being created (it has no saga: only the actions' templates count)."""
    if plan is None:
        return
    with sessions() as session:
        check_plan(session, tenant, plan)


def run_steps_of(session: Session, item: WorkItem) -> frozenset[str]:
    """The steps of the item's run: its saga's template's (an item a saga step waits on)."""
    if item.saga_id is None:
        return frozenset()
    saga = session.get(SagaRun, item.saga_id)
    if saga is None:
        return frozenset()
    spec = get_template(session, saga.template_name, saga.template_version, tenant=saga.tenant)
    return frozenset(step.name for step in spec.steps)


def applicable(item: WorkItem, plan: CompensationPlan, failed_step: str | None) -> list[CompensationStep]:
    """The plan's actions that apply to the item as it ended, in the order they run (reverse)."""
    lifecycle = LIFECYCLES[item.lifecycle]
    if item.status in lifecycle.succeeded:
        chosen = list(plan.steps)
    else:
        failed = failed_step or item.saga_step
        chosen = [
            s
            for s in plan.steps
            if s.on == "any_failure" or s.target_step == "*" or (failed is not None and s.target_step == failed)
        ]
    return list(reversed(chosen))


def build_template(
    tenant: str,
    plan: CompensationPlan,
    steps: list[CompensationStep],
    actions: dict[str, Action],
    *,
    keyed: bool,
) -> TemplateSpec:
    """The saga template that runs ``steps`` (already in run order) with the plan's retries.

    ``keyed`` (the input is an object, carrying ``work_item_id``): each action's idempotence key is
    the item's and the action's, the same in every run of the item's plan, so a run asked for again
    after one that failed does not redo what the first run's actions did (the worker's dedup, or
    the handler's own, answers them) and only what failed runs again."""
    retry = RetryPolicy(
        max_attempts=plan.retry_policy.max_retries + 1,
        initial_ms=plan.retry_policy.backoff_ms,
        max_ms=max(plan.retry_policy.backoff_ms, min(MAX_BACKOFF_MS, plan.retry_policy.backoff_ms * 32)),
    )
    specs: list[StepSpec] = []
    used: dict[str, int] = {}
    for step in steps:
        used[step.action_id] = used.get(step.action_id, 0) + 1
        name = step.action_id if used[step.action_id] == 1 else f"{step.action_id}.{used[step.action_id]}"
        specs.append(
            StepSpec(
                name=name,
                kind="handler",
                capability=actions[step.action_id].capability,
                handler=step.action_id,
                retry=retry,
                idempotence_key=f"workitem:{{input.{ITEM_KEY}}}:{name}" if keyed else None,
            )
        )
    body = {
        "steps": [s.model_dump(mode="json") for s in specs],
        "tenant": tenant,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return TemplateSpec(
        name=f"{TEMPLATE_PREFIX}{digest}",
        version=TEMPLATE_VERSION,
        description="Runs a work item's compensation plan (written by POST .../compensate).",
        input_schema={},
        steps=specs,
    )


def request_hash(failed_step: str | None, reason: str | None) -> str:
    data = {"failed_step": failed_step, "reason": reason}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def compensate(
    sessions: SessionFactory,
    settings: Settings,
    principal: Principal,
    item_id: str,
    *,
    idempotence_key: str | None,
    failed_step: str | None,
    reason: str | None,
) -> Started:
    """Start the item's compensation run, or answer the one this key started.

    409 when the item has no plan, is still open, has nothing to undo, or has a run under way."""
    require(principal, Scope.work_write)
    key = idempotence_key or str(uuid.uuid4())
    digest = request_hash(failed_step, reason)
    # The template first, in a transaction of its own: registering is idempotent (same plan, same
    # template), and a template left by a request that then fails is harmless.
    with sessions() as session:
        item = load_item(session, principal, item_id)
        found = _by_key(session, item.id, key, digest)
        if found is not None:
            return Started(found, False, [])
        plan, steps, actions = _what_to_run(session, item, failed_step)
        spec = build_template(item.tenant, plan, steps, actions, keyed=isinstance(_saga_input(session, item), dict))
    register_template(sessions, spec, tenant=item.tenant)
    try:
        with sessions.begin() as session:
            item = load_item(session, principal, item_id, lock=True)
            found = _by_key(session, item.id, key, digest)
            if found is not None:
                return Started(found, False, [])
            _refuse_while_running(session, item)
            plan, steps, actions = _what_to_run(session, item, failed_step)
            saga_input = _saga_input(session, item)
            spec = build_template(item.tenant, plan, steps, actions, keyed=isinstance(saga_input, dict))
            now = utcnow()
            engine = SagaEngine(session.uow, SqlSagaStore(session), settings, now)
            saga = start_saga(
                engine,
                spec,
                tenant=item.tenant,
                input=saga_input,
                digest=input_hash(spec.name, saga_input),
                idempotence_key=None,
            )
            session.uow.write(session, first=new_rows([saga]))
            run = WorkItemCompensation(
                id=str(uuid.uuid4()),
                item_id=item.id,
                tenant=item.tenant,
                saga_id=saga.id,
                idempotence_key=key,
                request_hash=digest,
                status=RunStatus.running,
                requested_by=principal.ref,
                reason=reason,
                from_status=item.status,
                created_at=now,
            )
            session.add(run)
            session.flush()
            audit.record(
                session,
                item,
                "compensation_started",
                principal.ref,
                reason=reason,
                details={
                    "compensation": run.id,
                    "saga_id": saga.id,
                    "actions": [s.action_id for s in steps],
                },
            )
    except IntegrityError:
        # The same key raced in another request: answer with its run.
        with sessions() as session:
            found = _by_key(session, item_id, key, digest)
        if found is None:
            raise
        return Started(found, False, [])
    return Started(run, True, session.uow.take_outgoing())


def _what_to_run(
    session: Session, item: WorkItem, failed_step: str | None
) -> tuple[CompensationPlan, list[CompensationStep], dict[str, Action]]:
    if item.compensation is None:
        raise Conflict(
            f"work item {item.id} has no compensation plan; set one with PATCH (compensation)",
            details=[{"path": "compensation", "message": "none"}],
        )
    if item.is_open:
        raise Conflict(
            f"work item {item.id} is still {item.status}: compensate an item that has ended (done or failed)",
            details=[{"path": "status", "message": f"is {item.status}, open"}],
        )
    if item.status == LIFECYCLES[item.lifecycle].undone:
        raise Conflict(
            f"work item {item.id} is {item.status} already: its compensation ran",
            details=[{"path": "status", "message": item.status}],
        )
    plan = CompensationPlan.model_validate(item.compensation)
    run_steps = run_steps_of(session, item)
    if failed_step is not None and failed_step not in run_steps | _targets(plan):
        raise InvalidInput(
            f"{failed_step!r} is not a step of the item's run or a target of its plan",
            details=[{"path": "failed_step", "message": "unknown step"}],
        )
    check_plan(session, item.tenant, plan, run_steps=run_steps)
    steps = applicable(item, plan, failed_step)
    if not steps:
        raise Conflict(
            f"no action of the plan of {item.id} applies to how it ended ({item.status})",
            details=[{"path": "compensation.steps", "message": "none applies"}],
        )
    return plan, steps, known_actions(session, item.tenant)


def _targets(plan: CompensationPlan) -> frozenset[str]:
    return frozenset(s.target_step for s in plan.steps if s.target_step != "*")


def _saga_input(session: Session, item: WorkItem) -> Any:
    """What the actions are given: the input of the item's saga (what the handlers it undoes were
    given), else the item's payload (the spec's "input for agent"); an object gets the item's id
    under ``work_item_id`` too (handlers' models ignore fields they do not declare)."""
    given: Any = item.payload
    if item.saga_id is not None:
        saga = session.get(SagaRun, item.saga_id)
        if saga is not None:
            given = saga.input
    return {**given, ITEM_KEY: item.id} if isinstance(given, dict) else given


def _by_key(session: Session, item_id: str, key: str, digest: str) -> WorkItemCompensation | None:
    run = session.scalar(
        select(WorkItemCompensation).where(
            WorkItemCompensation.item_id == item_id, WorkItemCompensation.idempotence_key == key
        )
    )
    if run is not None and run.request_hash != digest:
        raise Conflict(
            f"idempotence key {key!r} already started compensation {run.id} of {item_id} with another body",
            details=[{"path": "Idempotency-Key", "message": f"already names compensation {run.id}"}],
        )
    return run


def _refuse_while_running(session: Session, item: WorkItem) -> None:
    running = session.scalar(
        select(WorkItemCompensation.id)
        .join(SagaRun, SagaRun.id == WorkItemCompensation.saga_id)
        .where(WorkItemCompensation.item_id == item.id, SagaRun.state.not_in(TERMINAL_SAGA_STATES))
        .limit(1)
    )
    if running is not None:
        raise Conflict(
            f"a compensation of {item.id} is under way ({running}); wait for it to end",
            details=[{"path": "compensation", "message": f"{running} is running"}],
        )
