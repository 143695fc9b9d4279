"""Whether an agent is live, stale or dead, from when it was last heard from.

Live while its last heartbeat is at most ``agent_stale_after_s`` old, stale up to
``agent_dead_after_s``, dead after that; an agent never heard from is dead. Every place that
decides it (a row shown by the API, a routing candidate, a listing's filter in SQL) uses this
module, so they cannot disagree at a boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_

from config.settings import Settings, get_settings
from models.agent_tables import Agent
from models.agents import Liveness


@dataclass(frozen=True)
class Thresholds:
    """How old a last heartbeat may be for an agent to count as live, and as stale."""

    stale_after_s: float
    dead_after_s: float

    @classmethod
    def of(cls, settings: Settings | None = None) -> Thresholds:
        """The thresholds ``settings`` (default: the process's) configure."""
        settings = settings or get_settings()
        return cls(stale_after_s=settings.agent_stale_after_s, dead_after_s=settings.agent_dead_after_s)


def liveness(last_heartbeat_at: datetime | None, now: datetime, thresholds: Thresholds) -> Liveness:
    if last_heartbeat_at is None:
        return "dead"
    if last_heartbeat_at >= now - timedelta(seconds=thresholds.stale_after_s):
        return "live"
    if last_heartbeat_at >= now - timedelta(seconds=thresholds.dead_after_s):
        return "stale"
    return "dead"


def liveness_at(now: datetime, thresholds: Thresholds) -> Callable[[datetime | None], Liveness]:
    """:func:`liveness` at ``now`` for many agents: the boundaries worked out once."""
    live_since = now - timedelta(seconds=thresholds.stale_after_s)
    stale_since = now - timedelta(seconds=thresholds.dead_after_s)

    def state(last_heartbeat_at: datetime | None) -> Liveness:
        if last_heartbeat_at is None:
            return "dead"
        if last_heartbeat_at >= live_since:
            return "live"
        return "stale" if last_heartbeat_at >= stale_since else "dead"

    return state


def liveness_is(state: Liveness, now: datetime, thresholds: Thresholds) -> ColumnElement[bool]:
    """SQL: the agent's liveness at ``now`` is ``state`` (the same boundaries as :func:`liveness`)."""
    beat = Agent.last_heartbeat_at
    live_since = now - timedelta(seconds=thresholds.stale_after_s)
    stale_since = now - timedelta(seconds=thresholds.dead_after_s)
    if state == "live":
        return beat >= live_since
    if state == "stale":
        return and_(beat < live_since, beat >= stale_since)
    return or_(beat.is_(None), beat < stale_since)
