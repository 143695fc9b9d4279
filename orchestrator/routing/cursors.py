"""Round-robin rules' turns: per rule and tenant, the agent the rule chose last.

The cursor's row is locked while a decision reads it, so two routers using the same rule take
turns rather than both choosing the same agent. The very first decision of a rule for a tenant
has no row to lock: two of those at once may choose the same agent, once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models.routing_tables import CURSORS, RoutingCursor
from orchestrator.routing.inputs import LiveRule


def cursor_for(session: Session, rule: LiveRule, tenant: str) -> str | None:
    """The ref the rule chose last for the tenant's items (locked until the transaction ends); None: never."""
    return session.scalar(
        select(RoutingCursor.last_ref)
        .where(
            RoutingCursor.rule_tenant == rule.tenant, RoutingCursor.rule_id == rule.id, RoutingCursor.tenant == tenant
        )
        .with_for_update()
    )


def advance(session: Session, rule: LiveRule, tenant: str, ref: str, now: datetime) -> None:
    """The rule chose ``ref`` for one of the tenant's items: the next turn starts after it."""
    values = {"rule_tenant": rule.tenant, "rule_id": rule.id, "tenant": tenant, "last_ref": ref, "updated_at": now}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(CURSORS).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["rule_tenant", "rule_id", "tenant"], set_={"last_ref": ref, "updated_at": now}
        )
    )
