"""A tenant's fleet as routing keeps it in memory: the agents serving it (its own and the
operators'), each one's parsed spec, and which of them declare each capability.

A registry changes far less often than items are routed: what the router reads from the
database for each decision is only what changes all the time (load, liveness, spend) and the
tenant's fleet stamps (``orchestrator.agents.stamps``). A stamp that differs from the one the
fleet was read under means the registry changed: the fleet is read again. A tenant for which
neither it nor ``*`` has a stamp (no agent registered yet) has its fleet read for every decision.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import URL, BindParameter, ColumnElement, ScalarSelect, Select, bindparam, literal_column, select
from sqlalchemy.orm import Session

from models.agent_tables import AGENTS, FLEET_STAMPS
from models.agents import AgentSpec
from models.principal import ALL_TENANTS
from orchestrator.agents.workers import REGISTRANT as WORKERS

# The stamps a fleet was read under: the tenant's, and the operators' (``*``). None: no stamp.
Stamps = tuple[str | None, str | None]
_FLEETS_MAX = 10_000
# A fleet is read again after this long even if no stamp changed (see ``cached``).
MAX_AGE_S = 60.0


@dataclass(frozen=True)
class Member:
    """A registered agent serving the tenant, as routing needs it every decision."""

    tenant: str
    id: str
    ref: str  # "agent:<id>"
    version: int
    updated_at: datetime  # with the version, names the spec even across two databases at one URL
    spec: AgentSpec


@dataclass(frozen=True)
class Fleet:
    """The agents serving a tenant, as of the stamps they were read under."""

    stamps: Stamps
    members: tuple[Member, ...]  # by (tenant, id)
    # capability name -> the positions in ``members`` of those that declare it
    declaring: dict[str, frozenset[int]] = field(repr=False)
    read_at: float = field(default_factory=time.monotonic)
    # What ``source`` worked out from the specs alone, by the key of what was asked: kept with the
    # fleet, so a fleet read again starts afresh.
    screens: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cacheable(self) -> bool:
        # One stamp is enough: it is random, so it ties the fleet to this database; a side with
        # none (no operator's agent, say) gets one with its first agent, and the stamps differ.
        return self.stamps != (None, None)

    def having(self, capabilities: Collection[str]) -> list[Member]:
        """The members that declare every one of ``capabilities`` (all of them for none), in order."""
        if not capabilities:
            return list(self.members)
        sets = sorted((self.declaring.get(name, frozenset()) for name in set(capabilities)), key=len)
        positions = sets[0].intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        return [self.members[p] for p in sorted(positions)]


# (database, tenant) -> its fleet, as last read
_fleets: dict[tuple[URL, str], Fleet] = {}


def cached(session: Session, tenant: str) -> Fleet | None:
    """The tenant's fleet as last read, unless that was ``MAX_AGE_S`` ago: a safety net for a
    change no stamp recorded (a row written around the ORM, a process of an older release)."""
    fleet = _fleets.get(_key(session, tenant))
    if fleet is None or time.monotonic() - fleet.read_at > MAX_AGE_S:
        return None
    return fleet


def read(session: Session, tenant: str) -> Fleet:
    """Read the tenant's fleet now (and keep it, if it has stamps)."""
    now_stamps = stamps_of(session, tenant)
    previous = _fleets.get(_key(session, tenant))
    # A spec changes only with its version (and time): those unchanged since the last read are not parsed again.
    reuse = {(m.tenant, m.id, m.version, m.updated_at): m.spec for m in previous.members} if previous else {}
    members: list[Member] = []
    rows = session.execute(_MEMBERS, {"tenants": sorted({tenant, ALL_TENANTS})})
    for agent_tenant, agent_id, version, updated_at, body in rows:
        spec = reuse.get((agent_tenant, agent_id, version, updated_at)) or AgentSpec.model_validate(body)
        members.append(Member(agent_tenant, agent_id, f"agent:{agent_id}", version, updated_at, spec))
    declaring: dict[str, set[int]] = {}
    for position, member in enumerate(members):
        for capability in member.spec.capabilities:
            declaring.setdefault(capability.name, set()).add(position)
    fleet = Fleet(
        stamps=now_stamps,
        members=tuple(members),
        declaring={name: frozenset(found) for name, found in declaring.items()},
    )
    if fleet.cacheable:
        if len(_fleets) >= _FLEETS_MAX:
            _fleets.clear()
        _fleets[_key(session, tenant)] = fleet
    return fleet


def stamps_of(session: Session, tenant: str) -> Stamps:
    """The tenant's fleet stamps now: its own, and the operators'."""
    found: dict[str, str] = dict(session.execute(_STAMPS, {"tenants": sorted({tenant, ALL_TENANTS})}).all())
    return found.get(tenant), found.get(ALL_TENANTS)


def stamp_columns(tenant: ColumnElement[str]) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """SQL: the fleet stamps of ``tenant``, as two columns (its own, the operators'), for a
    statement that reads them along with something else."""
    own = select(FLEET_STAMPS.c.stamp).where(FLEET_STAMPS.c.tenant == tenant).scalar_subquery()
    operators = select(FLEET_STAMPS.c.stamp).where(FLEET_STAMPS.c.tenant == literal_column(f"'{ALL_TENANTS}'"))
    return own, operators.scalar_subquery()


def _key(session: Session, tenant: str) -> tuple[URL, str]:
    return (session.get_bind().engine.url, tenant)


_TENANTS: BindParameter[Any] = bindparam("tenants", expanding=True)
_STAMPS: Select[Any] = select(FLEET_STAMPS.c.tenant, FLEET_STAMPS.c.stamp).where(FLEET_STAMPS.c.tenant.in_(_TENANTS))
_MEMBERS: Select[Any] = (
    select(AGENTS.c.tenant, AGENTS.c.id, AGENTS.c.version, AGENTS.c.updated_at, AGENTS.c.spec)
    .where(
        AGENTS.c.tenant.in_(_TENANTS),
        AGENTS.c.deregistered_at.is_(None),
        # Celery workers never claim work items (as the registry's candidates()). A constant, not
        # a parameter: see ``loads.AGENT_KIND`` on PostgreSQL's plans for prepared statements.
        AGENTS.c.registered_by != literal_column(f"'{WORKERS}'"),
    )
    .order_by(AGENTS.c.tenant, AGENTS.c.id)
)
