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

# The columns that decide whether, and as what, an agent is a routing candidate.
_WATCHED = ("spec", "version", "deregistered_at", "registered_by", "tenant", "id")


def changed_tenants(session: Session) -> set[str]:
    """The tenants whose registry the session's pending changes alter."""
    tenants: set[str] = set()
    for row in _agents(session.new, session.deleted):
        tenants.add(row.tenant)
    for row in _agents(session.dirty):
        state = inspect(row)
        if any(state.attrs[name].history.has_changes() for name in _WATCHED):
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
