"""An operator's pauses of a template or of a capability queue: while one is in force nothing new
is dispatched for the steps of that template, or onto that capability, for the sagas of its tenant
("*": everybody's). A dispatch it holds waits on the saga run (``held``, ``held_by``) as for a
pause of the saga itself, with the saga's clocks stopped (:mod:`orchestrator.sagas.clocks`); new
sagas are still taken, and wait. Resuming sends what it held, oldest first.

Who may pause what: a principal with ``sagas:control`` pauses a template its tenant runs, or a
capability, for its own tenant's sagas only; an all-tenants principal pauses for every tenant
(``*``) or names one. A pause of every tenant is resumed by an all-tenants principal only.

The dispatching processes learn of a pause from :mod:`orchestrator.sagas.pause_book`; a process
that had not yet seen a resume may hold a dispatch after the resume has released the others, so
the orchestrators sweep for sagas held by a pause that no longer exists (:func:`release_orphans`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import Settings
from models.base import utcnow
from models.enums import PauseKind
from models.pause_api import PauseAuditRead, PauseRead
from models.principal import ALL_TENANTS
from models.tables import PauseAuditEntry, QueuePause, SagaRun, TemplateRow
from models.template import CAPABILITY
from orchestrator.errors import Conflict, Forbidden, InvalidInput, NotFound
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.pause_book import book_of, pause_key
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.storage.db import SessionFactory, lock_sagas, reading
from orchestrator.storage.pipeline import select_in_turn
from orchestrator.storage.unit_of_work import Outgoing

# Sagas released per transaction.
RELEASE_BATCH = 200

Publish = Callable[[list[Outgoing]], None]


def whose(principal_tenant: str, asked: str | None) -> str:
    """Whose sagas a pause asked for by a principal of ``principal_tenant`` holds."""
    if asked is None or asked == principal_tenant:
        return principal_tenant
    if principal_tenant != ALL_TENANTS:
        raise Forbidden(f"a token of tenant {principal_tenant!r} pauses its own sagas only, not tenant {asked!r}'s")
    return asked


def _check_name(session: Session, kind: PauseKind, name: str, tenant: str) -> None:
    if kind is PauseKind.capability:
        if not re.match(CAPABILITY, name):
            raise InvalidInput(
                f"{name!r} is not a capability (lower-case letters, digits, _ and -, at most 100)",
                details=[{"path": "capability", "message": "not a capability name"}],
            )
        return
    query = select(TemplateRow.name).where(TemplateRow.name == name).limit(1)
    if tenant != ALL_TENANTS:
        query = query.where(TemplateRow.tenant.in_([tenant, ALL_TENANTS]))
    if session.scalar(query) is None:
        raise NotFound(f"no template {name!r}")


def _find(session: Session, kind: PauseKind, tenant: str, name: str) -> QueuePause | None:
    return session.scalar(
        select(QueuePause).where(QueuePause.kind == kind.value, QueuePause.tenant == tenant, QueuePause.name == name)
    )


def pause_queue(
    sessions: SessionFactory, kind: PauseKind, name: str, *, tenant: str, actor: str, reason: str
) -> PauseRead:
    """Pause ``kind`` ``name`` for ``tenant``'s sagas (``*``: everybody's), with its audit entry.
    409: paused already."""
    now = utcnow()
    try:
        with sessions.begin() as session:
            _check_name(session, kind, name, tenant)
            found = _find(session, kind, tenant, name)
            if found is not None:
                raise Conflict(_already(found))
            row = QueuePause(kind=kind.value, tenant=tenant, name=name, paused_at=now, actor=actor, reason=reason)
            session.add(row)
            session.add(_entry(now, actor, "pause", kind, tenant, name, reason, {}))
            session.flush()
            read = _read(row, 0)
    except IntegrityError:
        # Paused by another request at the same moment.
        with sessions() as session:
            found = _find(session, kind, tenant, name)
        if found is None:
            raise
        raise Conflict(_already(found)) from None
    with sessions() as session:
        book_of(session).forget()
    return read


def resume_queue(
    sessions: SessionFactory,
    settings: Settings,
    publish: Publish,
    kind: PauseKind,
    name: str,
    *,
    tenant: str,
    actor: str,
    reason: str,
) -> tuple[PauseRead, int]:
    """Resume the pause of ``kind`` ``name`` for ``tenant`` and send what it held, oldest first;
    the pause as it was and how many held dispatches were sent. 409: not paused."""
    now = utcnow()
    with sessions.begin() as session:
        row = _find(session, kind, tenant, name)
        if row is None:
            everyone = _find(session, kind, ALL_TENANTS, name) if tenant != ALL_TENANTS else None
            if everyone is not None:
                raise Forbidden(
                    f"{kind.value} {name!r} is paused for every tenant ({everyone.actor}: {everyone.reason}); "
                    "only an all-tenants token resumes it"
                )
            raise Conflict(f"{kind.value} {name!r} is not paused for {_for(tenant)}: there is nothing to resume")
        key = pause_key(kind, tenant, name)
        read = _read(row, _held_count(session, key, ALL_TENANTS))
        session.delete(row)
        session.add(_entry(now, actor, "resume", kind, tenant, name, reason, {"held": read.held}))
    book_of(session).forget()
    sent = release(sessions, settings, publish, key, before=now)
    return read, sent


def release(sessions: SessionFactory, settings: Settings, publish: Publish, key: str, *, before: datetime) -> int:
    """Send the dispatches the pause ``key`` held since before ``before``, oldest first, a batch
    per transaction (each published once committed); how many. A saga that another pause still
    holds is held again, by that one."""
    sent = 0
    while True:
        with sessions.begin() as session:
            # Read afresh: the pause resumed is not to hold them again.
            book_of(session).refresh(session)
            ids = list(
                session.scalars(
                    select(SagaRun.id)
                    .where(SagaRun.held_by == key, SagaRun.held_at <= before)
                    .order_by(SagaRun.held_at, SagaRun.id)
                    .limit(RELEASE_BATCH)
                )
            )
            if not ids:
                return sent
            sagas = lock_sagas(session, ids)
            engine = SagaEngine(session.uow, SqlSagaStore(session), settings, utcnow())
            for saga_id in ids:
                saga = sagas.get(saga_id)
                # Taken meanwhile (resumed, cancelled, released by another process): not ours.
                if saga is None or saga.held_by != key or saga.state.terminal:
                    continue
                engine.send_held(saga, template_of(session, saga))
                sent += 1
        publish(session.uow.take_outgoing())
        if len(ids) < RELEASE_BATCH:
            return sent


# What pauses hold sagas now: the release loop's statement every second, built once.
_HELD_BY = select(SagaRun.held_by).where(SagaRun.held_by.is_not(None)).distinct()


def release_orphans(sessions: SessionFactory, settings: Settings, publish: Publish) -> int:
    """Send what is held by pauses that are no longer in force (a dispatch held by a process that
    had not yet seen the resume, or a resume whose process died while sending); how many. Also
    reads this process's pauses afresh. One query on an index when nothing is held."""
    now = utcnow()
    # Only reads: on SQLite without the write lock (the coordinator's) every second.
    with reading(sessions) as session:
        pauses = book_of(session).refresh(session)
        [held] = select_in_turn(session, [(_HELD_BY, {})])
        keys = {key for (key,) in held if key is not None}
    sent = 0
    for key in sorted(keys - pauses.keys()):
        sent += release(sessions, settings, publish, key, before=now)
    return sent


def list_pauses(session: Session, *, tenant: str) -> list[PauseRead]:
    """The pauses in force that hold the tenant's sagas (its own and every tenant's); all of them
    for ``*``. Each with how many of those sagas it holds now."""
    query = select(QueuePause).order_by(QueuePause.paused_at, QueuePause.id)
    if tenant != ALL_TENANTS:
        query = query.where(QueuePause.tenant.in_([tenant, ALL_TENANTS]))
    rows = list(session.scalars(query))
    counts = _held_counts(session, [pause_key(r.kind, r.tenant, r.name) for r in rows], tenant)
    return [_read(r, counts.get(pause_key(r.kind, r.tenant, r.name), 0)) for r in rows]


def pause_history(
    session: Session, *, tenant: str, kind: PauseKind | None, name: str | None, limit: int
) -> list[PauseAuditRead]:
    """Pauses and resumes, newest first: of the tenant's own and every tenant's pauses (all for ``*``)."""
    query = select(PauseAuditEntry).order_by(PauseAuditEntry.at.desc(), PauseAuditEntry.id.desc()).limit(limit)
    if tenant != ALL_TENANTS:
        query = query.where(PauseAuditEntry.tenant.in_([tenant, ALL_TENANTS]))
    if kind is not None:
        query = query.where(PauseAuditEntry.kind == kind.value)
    if name is not None:
        query = query.where(PauseAuditEntry.name == name)
    return [PauseAuditRead.model_validate(e) for e in session.scalars(query)]


def held_by_pause(session: Session, key: str) -> PauseRead | None:
    """The pause a saga's ``held_by`` names, if it is still in force."""
    kind, tenant, name = key.split(":", 2)
    row = _find(session, PauseKind(kind), tenant, name)
    return None if row is None else _read(row, 0)


def _held_count(session: Session, key: str, tenant: str) -> int:
    return _held_counts(session, [key], tenant).get(key, 0)


def _held_counts(session: Session, keys: list[str], tenant: str) -> dict[str, int]:
    if not keys:
        return {}
    query = select(SagaRun.held_by, func.count()).where(SagaRun.held_by.in_(keys)).group_by(SagaRun.held_by)
    if tenant != ALL_TENANTS:
        query = query.where(SagaRun.tenant == tenant)
    return {key: int(n) for key, n in session.execute(query) if key is not None}


def _entry(
    at: datetime, actor: str, action: str, kind: PauseKind, tenant: str, name: str, reason: str, detail: dict[str, Any]
) -> PauseAuditEntry:
    return PauseAuditEntry(
        at=at, actor=actor, action=action, kind=kind.value, tenant=tenant, name=name, reason=reason, detail=detail
    )


def _read(row: QueuePause, held: int) -> PauseRead:
    return PauseRead(
        kind=PauseKind(row.kind),
        name=row.name,
        tenant=row.tenant,
        paused_at=row.paused_at,
        actor=row.actor,
        reason=row.reason,
        held=held,
    )


def _for(tenant: str) -> str:
    return "every tenant" if tenant == ALL_TENANTS else f"tenant {tenant!r}"


def _already(row: QueuePause) -> str:
    return (
        f"{row.kind} {row.name!r} is paused already for {_for(row.tenant)} "
        f"(since {row.paused_at:%Y-%m-%d %H:%M:%S}, by {row.actor}: {row.reason}); resume it"
    )
