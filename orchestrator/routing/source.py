"""The one seam through which routing reads the agents it may choose from: the agent registry's
``candidates`` (registered agents serving the tenant, with their load, liveness and spend)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models.agents import Candidate
from orchestrator import agents


def candidates(session: Session, tenant: str, *, now: datetime) -> list[Candidate]:
    """The registered agents that serve ``tenant`` (its own and the operators'), as of ``now``."""
    return agents.candidates(session, tenant, now=now)
