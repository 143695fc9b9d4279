"""The nightly traceability validation (spec §13.1, "Daily: nightly batch validation"): one
durable timer per tenant (kind ``trace_validation``, key ``trace_validation:<tenant>``), due at the
configured hour (UTC, ``WORKYARD_TRACE_VALIDATION_HOUR``). Firing runs the tenant's full
validation (once the timer batch commits, on the timer service's validation worker, not in the
timer loop: in a transaction of its own), records what it
finds broken (``breaks``: once per broken link, so the same break found again tomorrow opens
nothing new) and moves the timer to the same hour the next day. Being a row, the timer survives
restarts; a process that dies mid-run leaves it due again within ``TAKEN_FOR``.

Which tenants: every tenant with work items or goals. The timer loop arms the missing ones as it
starts and then hourly (:func:`ensure_armed`), and moves existing ones when the hour is changed.

Goals no item names make a tenant's status ``incomplete`` (a gap in planning, nothing recorded is
wrong): they are not breaks, and open nothing. Each check lists at most 100 ids a night, leaving
out those on file already; a tenant with more breaks of one kind has the rest recorded on the
following nights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.enums import TimerKind
from models.principal import Principal, PrincipalType, Scope
from models.tables import TIMERS, Timer
from models.trace_tables import ACTIONS, ARTIFACTS
from models.traceability import TraceabilityValidation
from models.work_tables import WorkItem, WorkItemCompensation
from orchestrator.storage.db import make_session_factory
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.traceability.realtime import Finding
from orchestrator.traceability.validate import validate
from orchestrator.work import trace_alerts

log = logging.getLogger(__name__)

KIND = TimerKind.trace_validation
FOUND_BY = "nightly"
# How long a fired timer is held by the run it started: if that run has not moved it to the next
# night by then (its process died), it comes due again.
TAKEN_FOR = timedelta(hours=1)

# Timers armed per INSERT: PostgreSQL takes at most 65,535 parameters a statement (5 a row here).
ARM_CHUNK = 1000
# Where a timer batch's session collects the runs its nightly timers start, once it has committed:
# the timer service hands them to its validation worker (``TimerService``).
RUNS = "trace_validation_runs"

# Every tenant with work items or goals: a walk of the tenant indexes (one probe per tenant, not a
# scan of a million items).
_TENANTS = text(
    "WITH RECURSIVE w(tenant) AS (SELECT min(tenant) FROM work_items UNION ALL "
    "SELECT (SELECT min(x.tenant) FROM work_items x WHERE x.tenant > w.tenant) FROM w WHERE w.tenant IS NOT NULL) "
    "SELECT tenant FROM w WHERE tenant IS NOT NULL UNION SELECT DISTINCT tenant FROM goals"
)


def key_of(tenant: str) -> str:
    return f"{KIND.value}:{tenant}"


def next_run(now: datetime, hour: int) -> datetime:
    """The first ``hour``:00 UTC strictly after ``now``."""
    at = datetime.combine(now.date(), time(hour), tzinfo=now.tzinfo)
    return at if at > now else at + timedelta(days=1)


def ensure_armed(session: Session, hour: int, now: datetime) -> int:
    """Arm the nightly timer of every tenant that has none, and move those armed for another hour;
    how many were armed or moved."""
    tenants = {t for t in session.scalars(_TENANTS) if t and t != "*"}
    armed = {t.payload.get("tenant"): t for t in session.scalars(select(Timer).where(Timer.kind == KIND.value))}
    changed = 0
    for tenant, timer in armed.items():
        if timer.payload.get("hour") != hour:
            timer.payload = {"tenant": tenant, "hour": hour}
            timer.due_at = next_run(now, hour)
            changed += 1
    missing = sorted(tenants - set(armed))
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for start in range(0, len(missing), ARM_CHUNK):
        chunk = missing[start : start + ARM_CHUNK]
        # Another orchestrator arming the same tenant at once: its timer stands, ours is dropped.
        session.execute(
            dialect.insert(TIMERS)
            .values(
                [
                    {
                        "key": key_of(tenant),
                        "kind": KIND.value,
                        "payload": {"tenant": tenant, "hour": hour},
                        "due_at": next_run(now, hour),
                        "created_at": now,
                    }
                    for tenant in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
    changed += len(missing)
    return changed


def fire(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """The tenant's night has come: take the timer for ``TAKEN_FOR`` and, once this batch has
    committed, hand the validation (:func:`_validate_and_rearm`, a transaction of its own) to the
    timer service (``session.info[RUNS]``), which runs it on its validation worker.

    Not in the batch's transaction: that one holds the row locks of the other timers' items (a
    lease expiry's, an SLA's) and a million items take seconds to validate; agents' calls on those
    items would wait as long. Nor in the timer loop's thread: lease expiries, SLA and saga timers
    would wait for every tenant due at that hour. A process that dies before the run ends (or a
    run still queued then) leaves the timer due again ``TAKEN_FOR`` later, and a timer loop then
    runs it; the earlier run, if it comes, finds the timer no longer its own and does nothing."""
    tenant = timer.payload.get("tenant")
    hour = timer.payload.get("hour")
    if not isinstance(tenant, str) or not isinstance(hour, int):
        return  # not one of ours to re-arm: the loop deletes it
    taken_until = now + TAKEN_FOR
    # Moved into the future, the timer stays (the loop deletes only timers still due).
    timer.due_at = taken_until
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = timer.key
    runs: list[Callable[[], None]] = session.info.setdefault(RUNS, [])
    job = partial(_validate_and_rearm, engine, key, tenant, hour, taken_until, now)
    # Only once committed: a batch that rolls back starts nothing.
    uow_of(session).after_commit(lambda: runs.append(job))


def _validate_and_rearm(engine: Engine, key: str, tenant: str, hour: int, taken_until: datetime, now: datetime) -> None:
    with make_session_factory(engine).begin() as session:
        timer = session.scalar(select(Timer).where(Timer.key == key).with_for_update())
        if timer is None or timer.due_at != taken_until:
            return  # deleted, or moved since (the hour changed): not this run's any more
        run(session, tenant, now)
        # Only this tenant's timer: the other tenants' are the timer loop's (ensure_armed, hourly).
        timer.due_at = next_run(now, hour)
    log.info("traceability validated for tenant %s; next run %s", tenant, next_run(now, hour).isoformat())


def run(session: Session, tenant: str, now: datetime) -> tuple[TraceabilityValidation, int]:
    """Validate ``tenant`` and raise its breaks; the report and how many breaks were new."""
    principal = Principal(PrincipalType.user, "traceability", tenant, frozenset({Scope.work_read.value}))
    # Only what is not on file yet: breaks past the first 100 of a kind get their night too.
    report = validate(session, principal, None, unrecorded=True)
    return report, trace_alerts.raise_breaks(session, tenant, findings(session, report), FOUND_BY, now)


def findings(session: Session, report: TraceabilityValidation) -> list[Finding]:
    """The broken links a validation lists, each with the item it concerns."""
    checks = report.checks
    found = [
        Finding("workItemToActionLinkage", i, i, f"agent work on {i} has fewer actions than its audit trail records")
        for i in checks.work_item_to_action_linkage.orphaned_work_items
    ]
    orphaned = checks.action_to_artifact_linkage.orphaned_actions
    action_items = _items_of(session, ACTIONS.c.id, ACTIONS.c.item_id, orphaned)
    found += [Finding("actionToArtifactLinkage", a, action_items.get(a), f"{a} has no artifact") for a in orphaned]
    ids = [*checks.deterministic_ids.duplicate_ids, *checks.deterministic_ids.invalid_formats]
    owners = {
        **_items_of(session, ARTIFACTS.c.id, ARTIFACTS.c.item_id, ids),
        **_items_of(session, ACTIONS.c.id, ACTIONS.c.item_id, ids),
        **{i: i for i in session.scalars(select(WorkItem.id).where(WorkItem.id.in_(ids)))},
    }
    found += [
        Finding("deterministicIds", i, owners.get(i), f"{i} is held twice across items, actions and artifacts")
        for i in checks.deterministic_ids.duplicate_ids
    ]
    found += [
        Finding("deterministicIds", i, owners.get(i), f"{i} is not the id its parts build")
        for i in checks.deterministic_ids.invalid_formats
    ]
    runs = checks.compensation_traceability.incomplete_compensations
    run_items = _items_of(session, WorkItemCompensation.id, WorkItemCompensation.item_id, runs)
    found += [
        Finding("compensationTraceability", c, run_items.get(c), f"compensation run {c} is not settled in the record")
        for c in runs
    ]
    found += [
        Finding("approvalTraceability", i, i, f"{i} passed a gate that needed an approval and names none")
        for i in checks.approval_traceability.missing_approvals
    ]
    return found


def _items_of(session: Session, id_column: Any, item_column: Any, ids: Iterable[str]) -> dict[str, str]:
    wanted = list(ids)
    if not wanted:
        return {}
    rows = session.execute(select(id_column, item_column).where(id_column.in_(wanted)))
    return {row[0]: row[1] for row in rows}
