"""A tenant's fleet stamp (``models.agent_tables.FleetStamp``) changes in the flush that changes
its registry: an agent registered, its spec or version changed, it left, or who registered it.

A flush listener rather than a call in each writer: the registry, the Celery workers' fold and
anything added later write agent rows through the ORM, and a writer that forgot the stamp would
leave the router deciding on a fleet that no longer exists. Heartbeats and spend are Core updates
of other columns and change no stamp.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, UOWTransaction

from models.agent_tables import FLEET_STAMPS, Agent
from models.base import utcnow
from orchestrator.agents.workers import REGISTRANT as WORKERS

# The columns that decide whether, and as what, an agent is a routing candidate.
_WATCHED = ("spec", "version", "deregistered_at", "registered_by", "tenant", "id")


def changed_tenants(session: Session) -> set[str]:
    """The tenants whose routing fleet the session's pending changes alter.

    A Celery worker's row (registered by ``system:celery`` before and after the change) is no
    routing candidate and changes no fleet. Leaving those alone also keeps the presence fold,
    which locks worker rows, from taking the stamp row: registry calls lock an agent's row and
    then the stamp's, and a writer doing it the other way round could deadlock with them."""
    tenants: set[str] = set()
    for row in _agents(session.new, session.deleted):
        if row.registered_by != WORKERS:
            tenants.add(row.tenant)
    for row in _agents(session.dirty):
        state = inspect(row)
        if not any(state.attrs[name].history.has_changes() for name in _WATCHED):
            continue
        registrants = {row.registered_by, *state.attrs.registered_by.history.deleted}
        if registrants != {WORKERS}:
            tenants.add(row.tenant)
    return tenants


def restamp(session: Session, tenants: Iterable[str]) -> None:
    """Give each tenant a new stamp (its first, if it had none)."""
    now = utcnow()
    rows = [{"tenant": t, "stamp": uuid.uuid4().hex, "changed_at": now} for t in sorted(set(tenants))]
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(FLEET_STAMPS)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant"], set_={"stamp": statement.excluded.stamp, "changed_at": now}
        ),
        rows,
    )


@event.listens_for(Session, "before_flush")
def _restamp_on_flush(session: Session, flush: UOWTransaction, instances: Any) -> None:
    tenants = changed_tenants(session)
    if tenants:
        restamp(session, tenants)


def _agents(*groups: Iterable[object]) -> Iterable[Agent]:
    for group in groups:
        for row in group:
            if isinstance(row, Agent):
                yield row
