"""The agents that may be given a tenant's work, as the router sees them at one moment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.agent_tables import Agent
from models.agents import Candidate
from models.base import utcnow
from orchestrator.agents.liveness import Thresholds
from orchestrator.agents.records import SPEC_TEXT, serving
from orchestrator.agents.views import as_candidates
from orchestrator.agents.workers import REGISTRANT as WORKERS


def candidates(
    session: Session, tenant: str, *, now: datetime | None = None, thresholds: Thresholds | None = None
) -> list[Candidate]:
    """Every registered (not deregistered) agent that serves ``tenant`` (the tenant's own and the
    operators' ``*`` ones), in the order of tenant and id, each with its load (open items it holds
    a live claim on), its liveness at ``now`` and what it spent in its budget's current period.

    Two queries whatever the number of agents: the routing engine calls it on every decision.
    Dead and over-budget agents are included; the router decides what to do with them. A
    candidate's ``spec`` may be shared with other calls' (parsed once per stored text): read it,
    never change it.
    ``thresholds`` default to the process's settings (``WORKYARD_AGENT_STALE_AFTER_S``, ...).
    """
    now = now or utcnow()
    # Celery workers are in the registry (live, with their queues' capabilities), but they run saga
    # steps from their queues and never claim a work item: not candidates for one.
    registered = (serving(tenant), Agent.deregistered_at.is_(None), Agent.registered_by != WORKERS)
    # The columns a candidate needs, not ORM objects: the spec as text, parsed once per text.
    rows = session.execute(
        select(Agent.tenant, Agent.id, SPEC_TEXT, Agent.last_heartbeat_at, Agent.spent, Agent.period_start)
        .where(*registered)
        .order_by(Agent.tenant, Agent.id)
    ).all()
    ids = select(Agent.id).where(*registered)
    return as_candidates(session, rows, now, thresholds or Thresholds.of(), among=ids)
