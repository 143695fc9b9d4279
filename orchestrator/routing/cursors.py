"""Round-robin rules' turns: per rule and tenant, the agent the rule chose last.

The cursor's row is locked while a decision reads it, so two routers using the same rule take
turns rather than both choosing the same agent. The very first decision of a rule for a tenant
has no row to lock: two of those at once may choose the same agent, once.

A transaction waits for one cursor at most, and for none once it holds an agent's hold. One that
routes several items (the timer loop) may need a second rule's cursor while another router,
holding that one, needs the first's: waiting would be a deadlock. So a further cursor is only
taken if it is free; one another router holds is read as it stands and not advanced (that router
moves it on): this decision may choose the agent the other one chooses, once, rather than fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models.routing_tables import CURSORS
from orchestrator.routing.inputs import LiveRule
from orchestrator.storage import driver_sql
from orchestrator.storage.unit_of_work import uow_of


def cursor_for(session: Session, rule: LiveRule, tenant: str) -> str | None:
    """The ref the rule chose last for the tenant's items (locked until the transaction ends, if
    this transaction may wait for it or it is free); None: never."""
    key = (rule.tenant, rule.id, tenant)
    uow = uow_of(session)
    held = uow.cursors_held
    params = {"rule_tenant": rule.tenant, "rule_id": rule.id, "tenant": tenant}
    # Waiting only while holding no cursor and no agent's hold (``hold``, which in turn waits only
    # while holding no other hold): whoever waits holds nothing another waits for, so there is no cycle.
    if (held or uow.agent_holds) and key not in held:
        row = _first(session, _TRY, params)
        if row is None:
            row = _first(session, _PLAIN, params)  # another router's turn (or never made): read, not held
            return None if row is None else str(row[0])
        held.add(key)
        return str(row[0])
    held.add(key)
    row = _first(session, _WAIT, params)
    return None if row is None else str(row[0])


def _first(
    session: Session, statement: tuple[Select[Any], driver_sql.DriverStatement], params: dict[str, Any]
) -> Sequence[Any] | None:
    if driver_sql.supported(session):
        # Past SQLAlchemy: a round-robin decision reads its cursor every time.
        rows = driver_sql.fetch(session, statement[1], params)
        return rows[0] if rows else None
    return session.execute(statement[0], params).first()


def _statements(query: Select[Any]) -> tuple[Select[Any], driver_sql.DriverStatement]:
    return query, driver_sql.compile_statement(query)


_QUERY = select(CURSORS.c.last_ref).where(
    CURSORS.c.rule_tenant == bindparam("rule_tenant", type_=CURSORS.c.rule_tenant.type),
    CURSORS.c.rule_id == bindparam("rule_id", type_=CURSORS.c.rule_id.type),
    CURSORS.c.tenant == bindparam("tenant", type_=CURSORS.c.tenant.type),
)
_PLAIN = _statements(_QUERY)
_WAIT = _statements(_QUERY.with_for_update())
_TRY = _statements(_QUERY.with_for_update(skip_locked=True))


def advance(session: Session, rule: LiveRule, tenant: str, ref: str, now: datetime) -> None:
    """The rule chose ``ref`` for one of the tenant's items: the next turn starts after it (unless
    another router holds the cursor: it moves it on)."""
    if (rule.tenant, rule.id, tenant) not in uow_of(session).cursors_held:
        return
    values = {"rule_tenant": rule.tenant, "rule_id": rule.id, "tenant": tenant, "last_ref": ref, "updated_at": now}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(CURSORS).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["rule_tenant", "rule_id", "tenant"], set_={"last_ref": ref, "updated_at": now}
        )
    )
