"""Recording what an agent spent, against its budget's current period."""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from models.agent_tables import Agent
from models.agents import AgentSpec
from models.base import utcnow
from orchestrator.agents.periods import period_start, spec_period
from orchestrator.agents.records import serving


def record_spend(session: Session, tenant: str, agent_id: str, amount: float, *, now: datetime | None = None) -> bool:
    """Add ``amount`` (in the agent's budget unit) to what agent ``agent_id`` spent in its budget's
    current period; a period that rolled over since starts again from ``amount``. ``tenant`` is
    the caller's: the agent is the tenant's own or an operator's (``*``). False if no registered
    agent has that id there (nothing is recorded)."""
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"a spend must be a finite amount >= 0, not {amount!r}")
    row = session.execute(
        select(Agent.tenant, Agent.spec).where(Agent.id == agent_id, serving(tenant), Agent.deregistered_at.is_(None))
    ).first()
    if row is None:
        return False
    start = period_start(spec_period(AgentSpec.model_validate(row.spec)), now or utcnow())
    # One statement, so concurrent completions of one agent add up rather than overwrite each
    # other. A period start later than ours (another process's clock is a little ahead, and saw
    # the new period first) is kept and added to.
    current = Agent.period_start >= start
    session.execute(
        update(Agent)
        .where(Agent.tenant == row.tenant, Agent.id == agent_id)
        .values(
            spent=case((current, Agent.spent + amount), else_=amount),
            period_start=case((current, Agent.period_start), else_=start),
        )
        .execution_options(synchronize_session=False)
    )
    return True
