"""The agents as the API shows them and as the router sees them: spec, liveness, load, spend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import Select
from sqlalchemy.orm import Session

from models.agent_api import AgentRead, HeartbeatSource
from models.agent_tables import Agent
from models.agents import Candidate
from orchestrator.agents.liveness import Thresholds, liveness
from orchestrator.agents.periods import is_current, spent_now
from orchestrator.agents.records import Keyed, loads, parse_spec, spec_of


class CandidateRow(Keyed, Protocol):
    """The columns of an agent a candidate is made of (``candidates`` selects only those)."""

    @property
    def spec_text(self) -> str: ...

    @property
    def last_heartbeat_at(self) -> datetime | None: ...

    @property
    def spent(self) -> float: ...

    @property
    def period_start(self) -> datetime | None: ...


def read_agents(session: Session, rows: Sequence[Agent], now: datetime, thresholds: Thresholds) -> list[AgentRead]:
    """API views of ``rows``, their loads counted in one query for all."""
    counted = loads(session, rows, now)
    views: list[AgentRead] = []
    for row in rows:
        spec = spec_of(row)
        views.append(
            AgentRead(
                id=row.id,
                ref=f"agent:{row.id}",
                tenant=row.tenant,
                spec=spec,
                liveness=liveness(row.last_heartbeat_at, now, thresholds),
                last_heartbeat_at=row.last_heartbeat_at,
                last_heartbeat_source=cast(HeartbeatSource | None, row.last_heartbeat_source),
                load=counted.get((row.tenant, row.id), 0),
                capacity=spec.capacity,
                spent=spent_now(spec, row.spent, row.period_start, now),
                # A period that rolled over has not begun to count yet.
                period_start=row.period_start if is_current(spec, row.period_start, now) else None,
                version=row.version,
                registered_by=row.registered_by,
                registered_at=row.registered_at,
                updated_at=row.updated_at,
            )
        )
    return views


def as_candidates(
    session: Session,
    rows: Sequence[CandidateRow],
    now: datetime,
    thresholds: Thresholds,
    *,
    among: Select[str] | None = None,
) -> list[Candidate]:
    """Router views of ``rows`` (``among``: the query of their ids, see ``records.loads``)."""
    counted = loads(session, rows, now, among=among)
    candidates: list[Candidate] = []
    for row in rows:
        spec = parse_spec(row.spec_text)
        candidates.append(
            Candidate(
                ref=f"agent:{row.id}",
                tenant=row.tenant,
                spec=spec,
                load=counted.get((row.tenant, row.id), 0),
                liveness=liveness(row.last_heartbeat_at, now, thresholds),
                spent=spent_now(spec, row.spent, row.period_start, now),
            )
        )
    return candidates
