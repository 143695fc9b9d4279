"""Validator runs: a check's validator is a ``@step`` handler on a capability queue, so an
external scanner is a handler like any other.

A run is dispatched through the outbox as a step dispatch whose ``saga_id`` is the run's id
(``val-…``); the worker reports back on the report queue as for any step, and the coordinator
hands reports of such ids here. A duplicate report finds the run settled and changes nothing.

``sync``: requesting the run is its own call (``POST …/validations``); the gated transition
succeeds only once a passing result is recorded (a passing run writes ``scan_result`` evidence).
``async``: the gated transition dispatches the runs not yet made and goes through; the item is
flagged for audit, and a failing run opens a remediation item in the item's tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config import keys
from models.base import utcnow
from models.enums import Outcome, Phase, TimerKind
from models.gate_tables import ValidationRow
from models.messages import StepDispatch, StepReport
from models.policies import (
    SCAN_RESULT,
    PolicyCheck,
    ValidationCreate,
    ValidationInput,
    ValidationRead,
    ValidationVerdict,
)
from models.principal import Principal, Scope
from models.tables import Timer
from models.work_item_types import effective_risk
from models.work_tables import WorkItem
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work import audit
from orchestrator.work.access import require
from orchestrator.work.gates import evidence
from orchestrator.work.gates.evaluate import Gate, gate_of, latest_runs
from orchestrator.work.sla.follow_ups import open_follow_up
from orchestrator.work.types import types_of
from orchestrator.work.views import load_item

PREFIX = "val-"
# A run's state while the transaction settling it is open (never committed: it ends passed or failed).
SETTLING = "settling"
SYSTEM = "system"


def is_validation(saga_id: str) -> bool:
    """Whether a report's saga id names a validator run."""
    return saga_id.startswith(PREFIX)


def request(
    session: Session, principal: Principal, item_id: str, body: ValidationCreate
) -> tuple[ValidationRead, bool]:
    """Dispatch the check's validator (True), or answer its run still pending (False)."""
    require(principal, Scope.work_write)
    item = load_item(session, principal, item_id, lock=True)
    gate = gate_of(session, item)
    if gate is None or gate.spec is None:
        raise Conflict(
            f"{item.id} names no registered policy: it has no checks to validate",
            details=[{"path": "check", "message": "the item has no policy"}],
        )
    check = gate.spec.check(body.check)
    if check is None or check.validator is None:
        with_validators = ", ".join(c.name for c in gate.spec.checks if c.validator is not None) or "none"
        raise InvalidInput(
            f"policy {gate.spec.id!r} has no check {body.check!r} with a validator",
            details=[{"path": "check", "message": f"checks with validators: {with_validators}"}],
        )
    latest = latest_runs(session, item.id).get(check.name)
    if latest is not None and latest.state == "pending":
        assert gate.row is not None
        stale = _stale(latest, gate.row.version, check)
        if stale is None:
            return read(latest), False
        # A run that can no longer answer for the check (a lost message, a dead worker, a policy
        # changed since): given up, so asking again dispatches a new one instead of waiting forever.
        latest.state, latest.error, latest.finished_at = "failed", stale, utcnow()
        uow_of(session).cancel_timer(_timer_key(latest.id))
    return read(dispatch(session, gate, check, principal.ref)), True


# A pending run is given up after this long (by its timer, or when asked for again): a validator
# is a scan, minutes at most; one that has not answered in an hour lost its message or its worker.
PENDING_GIVE_UP_S = 3600.0


def _stale(run: ValidationRow, live_version: int, check: PolicyCheck) -> str | None:
    """Why a pending run no longer counts (None: it still may answer)."""
    assert check.validator is not None
    if run.policy_version != live_version or (run.handler, run.capability) != (
        check.validator.handler,
        check.validator.capability,
    ):
        return f"given up: the policy changed (now version {live_version}) before it answered"
    if (utcnow() - run.requested_at).total_seconds() > PENDING_GIVE_UP_S:
        return f"given up: no answer within {PENDING_GIVE_UP_S:.0f} s (asked again)"
    return None


def run_async(session: Session, gate: Gate, actor: str) -> None:
    """At a gated transition: dispatch each async validator not run yet, and flag the item for audit."""
    if gate.spec is None:
        return
    runs = latest_runs(session, gate.item.id)
    dispatched = [
        dispatch(session, gate, check, actor).id
        for check in gate.spec.checks
        if check.validator is not None and check.validator.mode == "async" and check.name not in runs
    ]
    pending = [r.id for r in runs.values() if r.mode == "async" and r.state != "passed"]
    if dispatched or pending:
        audit.record(
            session,
            gate.item,
            "flagged",
            actor,
            reason="passed its gate before its async validators passed",
            details={"validations": dispatched + pending, "policy": gate.policy_id},
        )


def dispatch(session: Session, gate: Gate, check: PolicyCheck, actor: str) -> ValidationRow:
    assert gate.spec is not None and gate.row is not None and check.validator is not None
    item = gate.item
    now = utcnow()
    row = ValidationRow(
        id=f"{PREFIX}{uuid.uuid4().hex}",
        tenant=item.tenant,
        item_id=item.id,
        policy_id=gate.spec.id,
        policy_version=gate.row.version,
        check_name=check.name,
        handler=check.validator.handler,
        capability=check.validator.capability,
        mode=check.validator.mode,
        state="pending",
        requested_by=actor,
        requested_at=now,
    )
    session.add(row)
    session.flush()
    # Not bound to the item: an async run goes on after its item ended (and dropped its timers).
    uow_of(session).arm_timer(
        _timer_key(row.id), TimerKind.validation_give_up, now + timedelta(seconds=PENDING_GIVE_UP_S), now
    )
    item_type = types_of(session, [item.type]).get(item.type)
    given = ValidationInput(
        work_item_id=item.id,
        tenant=item.tenant,
        type=item.type,
        title=item.title,
        payload=item.payload,
        risk_level=effective_risk(item_type, item.risk_level).value,
        policy_id=gate.spec.id,
        policy_version=gate.row.version,
        check=check.model_dump(mode="json", by_alias=True, exclude_none=True),
    )
    message = StepDispatch(
        saga_id=row.id,
        template="validation",
        version=str(gate.row.version),
        step_index=0,
        step=check.name,
        handler=row.handler,
        capability=row.capability,
        phase=Phase.forward,
        attempt=1,
        idempotence_key=f"validation:{row.id}",
        input=given.model_dump(mode="json"),
        dispatched_at=now,
        tenant=item.tenant,
    )
    uow_of(session).send(
        keys.capability_queue(row.capability),
        {
            "task_id": row.id,
            "shadow": f"{row.handler} (validation {check.name})",
            "timeout_ms": None,
            "body": message.model_dump(mode="json"),
        },
        now,
    )
    audit.record(
        session,
        item,
        "validation_requested",
        actor,
        details={"validation": row.id, "check": check.name, "mode": row.mode, "handler": row.handler},
    )
    return row


def apply_reports(session: Session, reports: Iterable[StepReport], now: datetime) -> int:
    """Settle the runs these reports answer; a report for a settled or unknown run changes nothing."""
    applied = 0
    for report in reports:
        if report.outcome is Outcome.deferred:
            continue  # not started yet (a busy mutex): the worker dispatches it again
        taken = _take(session, report.saga_id)
        if taken is None:
            continue
        row, item = taken
        _settle(session, row, item, report, now)
        applied += 1
    return applied


def give_up(session: Session, timer: Timer, _item: WorkItem | None, now: datetime) -> None:
    """A run's give-up timer fired: if it is pending still, it failed, and says why (an async
    run's failure opens remediation as any failure does); asked for again, the check runs anew."""
    taken = _take(session, timer.key.removeprefix(f"{TimerKind.validation_give_up.value}:"))
    if taken is None:
        return  # it answered, or was given up when asked for again
    row, item = taken
    row.state, row.finished_at = "failed", now
    row.error = f"given up: no answer within {PENDING_GIVE_UP_S:.0f} s"
    _concluded(session, row, item, now, SYSTEM)


def _timer_key(run_id: str) -> str:
    return f"{TimerKind.validation_give_up.value}:{run_id}"


def _take(session: Session, run_id: str) -> tuple[ValidationRow, WorkItem] | None:
    """The run, if this transaction is the one to settle it (it was pending), and its item row-locked.

    The item is locked first, as a request for the check locks it before it gives up a stale run:
    the same order everywhere, so the two never wait on each other. The run is then taken by a
    conditional UPDATE, not a row lock: SQLite has none, and a report delivered twice (or a report
    and the give-up timer) may be applied by two transactions at once. Only the one that moves it
    off pending settles it."""
    item_id = session.scalar(select(ValidationRow.item_id).where(ValidationRow.id == run_id))
    if item_id is None:
        return None
    item = session.scalar(select(WorkItem).where(WorkItem.id == item_id).with_for_update())
    if item is None:
        return None
    taken = session.execute(
        update(ValidationRow)
        .where(ValidationRow.id == run_id, ValidationRow.state == "pending")
        .values(state=SETTLING)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        return None
    row = session.scalar(
        select(ValidationRow).where(ValidationRow.id == run_id).execution_options(populate_existing=True)
    )
    if row is None:
        return None
    return row, item


def _settle(session: Session, row: ValidationRow, item: WorkItem, report: StepReport, now: datetime) -> None:
    verdict: ValidationVerdict | None = None
    if report.outcome is Outcome.succeeded:
        try:
            verdict = ValidationVerdict.model_validate(report.result)
        except ValidationError as exc:
            row.error = (
                f"the validator's result is not a verdict {{passed, summary, findings}}: {exc.error_count()} error(s)"
            )
    else:
        row.error = report.error.message if report.error is not None else f"the run was {report.outcome.value}"
    row.result = report.result
    row.finished_at = now
    row.state = "passed" if verdict is not None and verdict.passed else "failed"
    if verdict is not None and not verdict.passed:
        row.error = verdict.summary or "the validator did not pass the item"
    if row.state == "passed":
        content = ValidationVerdict.model_validate(report.result).model_dump_json()
        evidence_id = f"EV-{row.id}"
        written = evidence.write(
            session,
            item,
            evidence_id=evidence_id,
            policy_id=row.policy_id,
            policy_version=row.policy_version,
            evidence_type=SCAN_RESULT,
            checks=[row.check_name],
            meta={"validation": row.id, "handler": row.handler, "worker": report.worker},
            artifacts=[
                {
                    "id": f"ART-{evidence_id}-001",
                    "name": f"{row.handler} result",
                    "media_type": "application/json",
                    "uri": None,
                    "sha256": evidence.content_digest(content),
                    "size": len(content.encode()),
                    "content": content,
                }
            ],
            body_hash=evidence.content_digest(content),
            actor=f"validator:{row.handler}",
        )
        row.evidence_id = evidence_id if written is not None else None
    uow_of(session).cancel_timer(_timer_key(row.id))
    _concluded(session, row, item, now, f"validator:{row.handler}")


def _concluded(session: Session, row: ValidationRow, item: WorkItem, now: datetime, actor: str) -> None:
    """A run has passed or failed: a failed async one opens remediation; either is audited."""
    if row.state == "failed" and row.mode == "async":
        row.remediation_item_id = open_follow_up(
            session,
            now,
            tenant=item.tenant,
            kind="remediation",
            key=f"validation:{row.id}",
            title=f"check {row.check_name} failed on {item.id} after it passed its gate",
            description=f"The async validator {row.handler} of policy {row.policy_id} failed: {row.error}",
            payload={
                "incidentRef": f"validation:{row.id}",
                "startAt": now.isoformat(),
                "remediationPlan": f"review {item.id} against check {row.check_name}: {row.error}",
                "workItem": item.id,
            },
            scope=Scope.work_claim.value,
            created_by=SYSTEM,
            priority=max(item.priority, 70),
            meta={"validation": row.id, "work_item": item.id, "policy": row.policy_id},
        )
    audit.record(
        session,
        item,
        "validation_passed" if row.state == "passed" else "validation_failed",
        actor,
        reason=row.error,
        details={
            "validation": row.id,
            "check": row.check_name,
            "evidence": row.evidence_id,
            "remediation": row.remediation_item_id,
        },
    )


def listed(session: Session, principal: Principal, item_id: str) -> list[ValidationRead]:
    require(principal, Scope.work_read)
    item = load_item(session, principal, item_id)
    rows = session.scalars(
        select(ValidationRow).where(ValidationRow.item_id == item.id).order_by(ValidationRow.requested_at)
    ).all()
    return [read(r) for r in rows]


def read(row: ValidationRow) -> ValidationRead:
    return ValidationRead(
        id=row.id,
        work_item_id=row.item_id,
        policy_id=row.policy_id,
        policy_version=row.policy_version,
        check=row.check_name,
        handler=row.handler,
        capability=row.capability,
        mode=row.mode,
        state=row.state,
        result=row.result,
        error=row.error,
        evidence_id=row.evidence_id,
        remediation_item_id=row.remediation_item_id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        finished_at=row.finished_at,
    )
