"""Reading sagas for the API and the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from models.api import AttemptRead, SagaAuditRead, SagaItemRead, SagaPage, SagaRead, SagaSummary, StepRead
from models.enums import SagaState
from models.principal import ALL_TENANTS
from models.sla import SlaSpec
from models.tables import SagaAuditEntry, SagaRun, StepAttempt
from models.template import TemplateSpec
from models.work_tables import WorkItem
from orchestrator.errors import NotFound
from orchestrator.sagas.queue_pauses import held_by_pause
from orchestrator.sagas.templates import template_of
from orchestrator.storage.cursors import decode_cursor, encode_cursor


def read_saga(session: Session, saga_id: str, *, tenant: str = ALL_TENANTS) -> SagaRead:
    """A saga with its steps, attempts and work items, as a reader of ``tenant`` (``*``: any)
    may see it; another tenant's saga is not found, as a missing one."""
    saga = session.get(SagaRun, saga_id)
    if saga is None or (tenant != ALL_TENANTS and saga.tenant != tenant):
        raise NotFound(f"no saga with id {saga_id!r}")
    attempts = session.scalars(
        select(StepAttempt).where(StepAttempt.saga_id == saga_id).order_by(StepAttempt.dispatched_at, StepAttempt.id)
    ).all()
    query = select(WorkItem).where(WorkItem.saga_id == saga_id).order_by(WorkItem.created_at)
    if tenant != ALL_TENANTS:
        query = query.where(WorkItem.tenant == tenant)  # not the operators' remediation items
    items = session.scalars(query).all()
    read = saga_read(
        saga, [AttemptRead.model_validate(a) for a in attempts], items, _sla_of(session, saga), tenant=tenant
    )
    audit = session.scalars(
        select(SagaAuditEntry).where(SagaAuditEntry.saga_id == saga_id).order_by(SagaAuditEntry.id)
    ).all()
    read.audit = [SagaAuditRead.model_validate(entry) for entry in audit]
    if saga.held_by is not None:
        read.hold = held_by_pause(session, saga.held_by)
    return read


def started_read(saga: SagaRun, spec: TemplateSpec, attempts: Sequence[Mapping[str, Any]], *, tenant: str) -> SagaRead:
    """A saga just started, as :func:`read_saga` would read it back once committed, from what the
    submit wrote: the run, its steps, the timeline rows of the attempts it dispatched. (Only for
    a start that opened no work items: those are read back.)"""
    reads = [AttemptRead.model_validate({**_ATTEMPT_UNSET, **row}) for row in attempts]
    return saga_read(saga, reads, [], spec.sla, tenant=tenant)


# What a timeline row that was just written leaves out: its columns' defaults.
_ATTEMPT_UNSET: dict[str, Any] = {
    "worker": None,
    "fencing_token": None,
    "error": None,
    "started_at": None,
    "finished_at": None,
}


def saga_read(
    saga: SagaRun, attempts: Sequence[AttemptRead], items: Sequence[WorkItem], sla: SlaSpec | None, *, tenant: str
) -> SagaRead:
    """The API's view of a saga, as a reader of ``tenant`` sees it."""
    summary = SagaSummary.model_validate(saga)
    return SagaRead(
        **summary.model_dump(),
        input=saga.input,
        results=saga.results,
        sla=sla.model_dump(mode="json") if sla is not None else None,
        sla_events=saga.sla_events,
        steps=[StepRead.model_validate(s) for s in saga.steps],
        attempts=[_attempt(a, tenant) for a in attempts],
        work_items=[
            SagaItemRead(
                id=i.id,
                type=i.type,
                title=i.title,
                tenant=i.tenant,
                status=i.status,
                step=i.saga_step,
                phase=i.saga_phase,
                attempt=i.saga_attempt,
                holder=f"{i.claimed_by_type}:{i.claimed_by_id}" if i.claimed_by_id else None,
                lease_expires_at=i.lease_expires_at,
                created_at=i.created_at,
                sla_due_at=i.created_at + timedelta(milliseconds=i.sla["target_ms"]) if i.sla else None,
                sla_breached_at=i.sla_breached_at,
                sla_breach_count=i.sla_breach_count,
            )
            for i in items
        ],
    )


def _attempt(read: AttemptRead, tenant: str) -> AttemptRead:
    if tenant != ALL_TENANTS and read.worker and "@" in read.worker:
        # A tenant sees which worker ran its step, not the host it runs on (operators see both).
        read.worker = read.worker.split("@", 1)[0]
    return read


def list_sagas(
    session: Session,
    *,
    state: SagaState | None = None,
    template: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    tenant: str = ALL_TENANTS,
    of_tenant: str | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
) -> SagaPage:
    """Newest first, paged by an opaque cursor (stable while new sagas arrive); a tenant's own
    sagas only (``*``: every tenant's, or ``of_tenant``'s alone), created in
    [``created_from``, ``created_before``) where given."""
    query = select(SagaRun)
    if tenant != ALL_TENANTS:
        query = query.where(SagaRun.tenant == tenant)
    elif of_tenant is not None:
        query = query.where(SagaRun.tenant == of_tenant)
    if created_from is not None:
        query = query.where(SagaRun.created_at >= created_from)
    if created_before is not None:
        query = query.where(SagaRun.created_at < created_before)
    if state is not None:
        query = query.where(SagaRun.state == state)
    if template is not None:
        query = query.where(SagaRun.template_name == template)
    if cursor:
        created, saga_id = decode_cursor(cursor, datetime, str)
        query = query.where(
            or_(SagaRun.created_at < created, and_(SagaRun.created_at == created, SagaRun.id < saga_id))
        )
    rows = session.scalars(query.order_by(SagaRun.created_at.desc(), SagaRun.id.desc()).limit(limit + 1)).all()
    items = [SagaSummary.model_validate(r) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return SagaPage(items=items, next_cursor=next_cursor)


def _sla_of(session: Session, saga: SagaRun) -> SlaSpec | None:
    try:
        return template_of(session, saga).sla
    except NotFound:
        return None
