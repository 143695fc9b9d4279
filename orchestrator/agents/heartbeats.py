"""Marking agents live: an agent's own heartbeat, and the cheap mark that any work call by a
registered agent leaves.

Work calls (claim, heartbeat, start, complete, fail, ...) are the hot path: :func:`touch_agent`
skips them without a statement when this process marked the agent less than
``TOUCH_EVERY_S`` ago, and its one UPDATE changes no row when another process did. So an agent
busy with many items costs a write every few seconds, not one per call; liveness is measured in
tens of seconds (``WORKYARD_AGENT_STALE_AFTER_S``), so the mark is never late enough to matter.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from models.agent_api import HeartbeatSource
from models.agent_tables import Agent
from models.base import utcnow
from models.principal import Principal, PrincipalType, Scope
from orchestrator.agents.access import is_self
from orchestrator.agents.records import find, serving
from orchestrator.errors import Forbidden

TOUCH_EVERY_S = 5.0
# The marks this process made: (database, tenant, agent id) -> time.monotonic() of the mark.
_touched: dict[tuple[str, str, str], float] = {}
_touched_lock = threading.Lock()
_MAX_TOUCHED = 100_000


def touch_agent(
    session: Session, principal: Principal, source: HeartbeatSource, *, now: datetime | None = None
) -> bool:
    """Mark the calling agent live, if it is registered, at most every ``TOUCH_EVERY_S``: one
    conditional UPDATE, or nothing at all. True if a row was marked. A mark skipped because its
    transaction rolled back is made by the next call after ``TOUCH_EVERY_S``."""
    if principal.type is not PrincipalType.agent:
        return False
    # Keyed by the database too: a process (a test run) may serve several.
    bind = session.get_bind()
    key = (str(bind.engine.url), principal.tenant, principal.id)
    clock = time.monotonic()
    with _touched_lock:
        last = _touched.get(key)
        if last is not None and clock - last < TOUCH_EVERY_S:
            return False
        if len(_touched) >= _MAX_TOUCHED:
            _touched.clear()
        _touched[key] = clock
    now = now or utcnow()
    marked = session.execute(
        update(Agent)
        .where(
            Agent.id == principal.id,
            serving(principal.tenant),
            Agent.deregistered_at.is_(None),
            or_(Agent.last_heartbeat_at.is_(None), Agent.last_heartbeat_at < now - timedelta(seconds=TOUCH_EVERY_S)),
        )
        .values(last_heartbeat_at=now, last_heartbeat_source=source)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(marked, "rowcount", 0))


def forget_touches() -> None:
    """Forget this process's marks (tests: the next work call marks again at once)."""
    with _touched_lock:
        _touched.clear()


def heartbeat(
    session: Session,
    principal: Principal,
    agent_id: str,
    *,
    tenant: str | None = None,
    source: HeartbeatSource = "http",
    now: datetime | None = None,
) -> Agent:
    """An agent's heartbeat for itself (or an operator's, with ``agents:write``, for an agent it
    runs): the agent is live from ``now``."""
    row = find(session, principal, agent_id, tenant, lock=True)
    if not (is_self(principal, row.tenant, row.id) or _operates(principal, row.tenant)):
        raise Forbidden(
            f"only agent {agent_id!r} itself (or a token with agents:write for its tenant) beats for it",
            details=[{"path": "agent_id", "message": f"is not {principal.ref}"}],
        )
    row.last_heartbeat_at = now or utcnow()
    row.last_heartbeat_source = source
    return row


def _operates(principal: Principal, tenant: str) -> bool:
    return principal.has(Scope.agents_write.value) and principal.sees(tenant)
