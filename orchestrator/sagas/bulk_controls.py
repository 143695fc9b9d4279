"""A control applied to every saga a filter matches: counted first, then done saga by saga.

An operator sees how many sagas a filter matches before acting (a dry run, the default), then
acts naming that count: if the filter matches another number by then, nothing is done. Each saga
is controlled in a transaction of its own, so one that no longer allows the control (it finished
meanwhile) is answered on its own and does not keep the others from being done.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Select, select

from config.settings import Settings
from models.api import SagaBulkControl, SagaBulkRead, SagaBulkResult, SagaFilter
from models.principal import ALL_TENANTS
from models.tables import SagaRun
from orchestrator.errors import Conflict, Forbidden, InvalidInput, OrchestratorError
from orchestrator.sagas.controls import control_saga
from orchestrator.storage.db import SessionFactory
from orchestrator.storage.unit_of_work import Outgoing

SAMPLE = 20


def bulk_control(
    sessions: SessionFactory,
    settings: Settings,
    request: SagaBulkControl,
    *,
    actor: str,
    tenant: str,
    publish: Callable[[list[Outgoing]], None],
) -> SagaBulkRead:
    """Count (dry run) or apply ``request`` to the sagas of ``tenant`` (``*``: any) it matches;
    ``publish`` gets each saga's messages as soon as its transaction has committed."""
    query = _matching(request.filter, tenant)
    with sessions() as session:
        ids = list(session.scalars(query.limit(request.limit + 1)))
    matched = len(ids)
    read = SagaBulkRead(matched=matched, dry_run=request.dry_run, sample=ids[:SAMPLE])
    if request.dry_run:
        return read
    if request.expect is None:
        raise InvalidInput(
            "to act, name the count a dry run answered in expect (a dry run first shows how many sagas match)",
            details=[{"path": "expect", "message": "required when dry_run is false"}],
        )
    if matched > request.limit:
        raise Conflict(
            f"the filter matches more than {request.limit} sagas: narrow it (a state, a template, a time range)"
        )
    if matched != request.expect:
        raise Conflict(
            f"the filter matches {matched} sagas now, not the {request.expect} expected: nothing was done; "
            "run it dry again and look",
            details=[{"path": "expect", "message": f"matches {matched} now"}],
        )
    for saga_id in ids:
        try:
            done = control_saga(
                sessions, settings, saga_id, request.action, actor=actor, reason=request.reason, tenant=tenant
            )
        except OrchestratorError as exc:
            read.results.append(SagaBulkResult(id=saga_id, status=exc.status, error=exc.message))
            continue
        publish(done.outbox)
        read.results.append(SagaBulkResult(id=saga_id, status=200))
    read.done = sum(r.status == 200 for r in read.results)
    read.refused = len(read.results) - read.done
    return read


def _matching(where: SagaFilter, tenant: str) -> Select[str]:
    if all(value is None for value in where.model_dump().values()):
        raise InvalidInput(
            "a bulk control needs a filter: a state, a template, a tenant or a time range",
            details=[{"path": "filter", "message": "no condition given"}],
        )
    query = select(SagaRun.id).order_by(SagaRun.created_at, SagaRun.id)
    if tenant != ALL_TENANTS:
        if where.tenant is not None and where.tenant != tenant:
            raise Forbidden(f"this token is for tenant {tenant!r}, not {where.tenant!r}")
        query = query.where(SagaRun.tenant == tenant)
    elif where.tenant is not None:
        query = query.where(SagaRun.tenant == where.tenant)
    if where.state is not None:
        query = query.where(SagaRun.state == where.state)
    if where.template is not None:
        query = query.where(SagaRun.template_name == where.template)
    if where.created_after is not None:
        query = query.where(SagaRun.created_at >= where.created_after)
    if where.created_before is not None:
        query = query.where(SagaRun.created_at < where.created_before)
    return query
