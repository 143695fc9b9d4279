"""Routing rules as stored: every version kept, the latest of an id the live one, a disabled rule
a version with ``enabled`` false. Tenants own their rules; an operator's rule (tenant ``*``) is
tried for every tenant, which may read it but not change it.

The router reads a tenant's live rules for every item it routes: one query for their keys, and
each version's definition parsed once per process (kept by the hash of its body, so a cache
entry can never stand for another body).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import URL, BindParameter, ScalarSelect, any_, event, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, Scope
from models.routing import RoutingRuleCreate, RoutingRuleDetail, RoutingRuleRead, RoutingRuleSpec
from models.routing_tables import RULES, RoutingRuleRow
from orchestrator.errors import Conflict, Forbidden, InvalidInput, NotFound
from orchestrator.routing.inputs import LiveRule, LiveRules
from orchestrator.storage.unit_of_work import WorkSession
from orchestrator.work.access import require, tenant_for_write
from orchestrator.work.tokens import unknown_groups

# Live rule ids per tenant: the router reads them all for every item.
MAX_RULES_PER_TENANT = 1000
_PARSED_MAX = 20_000
_parsed: dict[str, RoutingRuleSpec] = {}
_live: dict[tuple[str, int, str], LiveRule] = {}
# (database, tenant) -> ((rule rows, newest row's time), the live rules then)
_lists: dict[tuple[URL, str], tuple[tuple[int, Any], LiveRules]] = {}
_SESSION_KEY = "routing.live_rules"


def register(session: Session, principal: Principal, body: RoutingRuleCreate) -> tuple[RoutingRuleRead, bool]:
    """Add a version of a rule (its first, for a new id). The live version's definition again
    adds nothing and answers False."""
    require(principal, Scope.routing_write)
    tenant = tenant_for_write(principal, body.tenant) if body.tenant or not principal.all_tenants else ALL_TENANTS
    spec = body.spec()
    _check(session, tenant, spec)
    document = spec.model_dump(mode="json")
    latest = _latest(session, tenant, spec.id, lock=True)
    if latest is not None and latest.body == document:
        return read(latest), False
    if latest is None and _live_count(session, tenant) >= MAX_RULES_PER_TENANT:
        raise Conflict(f"tenant {tenant!r} has {MAX_RULES_PER_TENANT} routing rules; disable or reuse one")
    row = _write(session, tenant, spec, document, principal.ref, after=latest)
    return read(row), True


def disable(session: Session, principal: Principal, rule_id: str, tenant: str | None) -> RoutingRuleRead:
    """Disable a rule: a new version that is never applied. Disabling a disabled rule adds nothing."""
    require(principal, Scope.routing_write)
    owner = _owner(principal, tenant)
    latest = _latest(session, owner, rule_id, lock=True)
    if latest is None:
        if owner != ALL_TENANTS and _latest(session, ALL_TENANTS, rule_id) is not None:
            raise Forbidden(f"routing rule {rule_id!r} is an operator's; only an all-tenant token may disable it")
        raise NotFound(f"no routing rule {rule_id!r}")
    if not latest.enabled:
        return read(latest)
    spec = _parse(latest).model_copy(update={"enabled": False})
    return read(_write(session, owner, spec, spec.model_dump(mode="json"), principal.ref, after=latest))


def detail(session: Session, principal: Principal, rule_id: str, tenant: str | None) -> RoutingRuleDetail:
    """The live version of a rule the principal sees, with every version it had."""
    require(principal, Scope.work_read)
    for owner in _visible(principal, tenant):
        rows = session.scalars(
            select(RoutingRuleRow)
            .where(RoutingRuleRow.tenant == owner, RoutingRuleRow.id == rule_id)
            .order_by(RoutingRuleRow.version)
        ).all()
        if rows:
            versions = [read(r) for r in rows]
            return RoutingRuleDetail.model_validate({**versions[-1].model_dump(), "versions": versions})
    raise NotFound(f"no routing rule {rule_id!r}")


def listed(session: Session, principal: Principal, tenant: str | None) -> list[RoutingRuleRead]:
    """The live versions the principal sees, in the order the router tries them."""
    require(principal, Scope.work_read)
    query = select(RoutingRuleRow).where(RoutingRuleRow.is_latest == true())
    if tenant is not None or not principal.all_tenants:
        query = query.where(RoutingRuleRow.tenant.in_(_visible(principal, tenant)))
    rows = session.scalars(query).all()
    ordered = sorted(rows, key=lambda r: (-r.priority, r.tenant == ALL_TENANTS, r.tenant, r.id))
    return [read(r) for r in ordered]


# What says whether a tenant's rules changed: how many rule rows it and ``*`` have, the newest's time.
Stamp = tuple[int, Any]


def live_rules(session: Session, tenant: str, *, stamp: Stamp | None = None) -> LiveRules:
    """The enabled live rules that may apply to the tenant's items: its own and the operators'.
    ``stamp``: the tenant's :data:`Stamp`, if the caller read it already (``stamp_columns``).

    Read once per transaction and tenant: the timer loop fires hundreds of lease and SLA timers
    in one transaction, each a re-routing trigger."""
    seen: dict[str, LiveRules] = session.info.setdefault(_SESSION_KEY, {})
    if tenant not in seen:
        seen[tenant] = _load_live(session, tenant, stamp)
    return seen[tenant]


def stamp_columns(owners: BindParameter[Any], *, array: bool = False) -> tuple[ScalarSelect[int], ScalarSelect[Any]]:
    """SQL: the :data:`Stamp` of the rules of ``owners`` (a tenant and ``*``), as two columns;
    ``array``: ``owners`` is one array parameter (PostgreSQL), not an expanding list."""
    of_owners = RULES.c.tenant == any_(owners) if array else RULES.c.tenant.in_(owners)
    count = select(func.count()).select_from(RULES).where(of_owners).scalar_subquery()
    newest = select(func.max(RULES.c.created_at)).where(of_owners).scalar_subquery()
    return count, newest


@event.listens_for(WorkSession, "after_transaction_end")
def _forget_live(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the transaction itself, not a savepoint inside it
        session.info.pop(_SESSION_KEY, None)


def _load_live(session: Session, tenant: str, stamp: Stamp | None) -> LiveRules:
    owners = sorted({tenant, ALL_TENANTS})
    # Rule rows are only ever added (a change is a new version, a disabling too): how many there
    # are and when the newest was written say whether the tenant's rules changed since the list
    # was last read, in one row instead of one per rule.
    if stamp is None:
        count, newest = session.execute(
            select(func.count(), func.max(RULES.c.created_at)).where(RULES.c.tenant.in_(owners))
        ).one()
        stamp = (count, newest)
    key = (session.get_bind().engine.url, tenant)
    cached = _lists.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    live = _read_live(session, owners)
    if len(_lists) >= _PARSED_MAX:
        _lists.clear()
    _lists[key] = (stamp, live)
    return live


def _read_live(session: Session, owners: list[str]) -> LiveRules:
    keys = session.execute(
        select(RULES.c.tenant, RULES.c.version, RULES.c.body_hash).where(
            RULES.c.tenant.in_(owners), RULES.c.is_latest == true(), RULES.c.enabled == true()
        )
    ).all()
    # Read into a dict of this call's own: another thread may clear the shared ones meanwhile.
    specs = {digest: spec for _, _, digest in keys if (spec := _parsed.get(digest)) is not None}
    missing = {digest for _, _, digest in keys if digest not in specs}
    if missing:
        if len(_parsed) + len(missing) > _PARSED_MAX:
            _parsed.clear()
            _live.clear()
        for body, digest in session.execute(
            select(RULES.c.body, RULES.c.body_hash).where(RULES.c.body_hash.in_(missing))
        ):
            specs[digest] = _parsed[digest] = RoutingRuleSpec.model_validate(body)
    live = LiveRules()
    for owner, version, digest in keys:
        # Kept too: a LiveRule works out its match conditions once.
        rule = _live.get((owner, version, digest))
        if rule is None:
            rule = _live[(owner, version, digest)] = LiveRule(owner, version, specs[digest])
        live.append(rule)
    return live


def read(row: RoutingRuleRow) -> RoutingRuleRead:
    return RoutingRuleRead.model_validate(
        {
            **row.body,
            "tenant": row.tenant,
            "version": row.version,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
    )


def _parse(row: RoutingRuleRow) -> RoutingRuleSpec:
    spec = _parsed.get(row.body_hash)
    if spec is None:
        spec = _parsed[row.body_hash] = RoutingRuleSpec.model_validate(row.body)
    return spec


def _check(session: Session, tenant: str, spec: RoutingRuleSpec) -> None:
    if tenant != ALL_TENANTS and spec.match.tenant not in (None, tenant):
        raise InvalidInput(
            f"a tenant's rule matches only its own tenant's items, not {spec.match.tenant!r}",
            details=[{"path": "match.tenant", "message": f"must be {tenant!r} or left out"}],
        )
    named = _groups_by_path(spec)
    unknown = set(unknown_groups(session, named.values()))
    if unknown:
        raise InvalidInput(
            f"the rule offers items to group(s) no principal is in: {', '.join(sorted(unknown))}",
            details=[{"path": path, "message": f"unknown group {g!r}"} for path, g in named.items() if g in unknown],
        )


def _groups_by_path(spec: RoutingRuleSpec) -> dict[str, str]:
    """Every group the rule may offer items to, by where the rule names it."""
    named: dict[str, str] = {}
    if spec.escalation is not None:
        for n, step in enumerate(spec.escalation.steps):
            if step.action == "escalate":
                named[f"escalation.steps.{n}.to"] = step.recipients[0]
    if spec.fallback is not None and spec.fallback.group is not None:
        named["fallback.group"] = spec.fallback.group
    return named


def _write(
    session: Session,
    tenant: str,
    spec: RoutingRuleSpec,
    document: dict[str, Any],
    actor: str,
    *,
    after: RoutingRuleRow | None,
) -> RoutingRuleRow:
    session.info.pop(_SESSION_KEY, None)  # this transaction reads the new version from now on
    if after is not None:
        after.is_latest = False
    row = RoutingRuleRow(
        tenant=tenant,
        id=spec.id,
        version=after.version + 1 if after is not None else 1,
        priority=spec.priority,
        enabled=spec.enabled,
        is_latest=True,
        body=document,
        body_hash=_digest(document),
        created_by=actor,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"routing rule {spec.id!r} was registered concurrently; send it again") from exc
    return row


def _latest(session: Session, tenant: str, rule_id: str, *, lock: bool = False) -> RoutingRuleRow | None:
    query = select(RoutingRuleRow).where(
        RoutingRuleRow.tenant == tenant, RoutingRuleRow.id == rule_id, RoutingRuleRow.is_latest == true()
    )
    return session.scalar(query.with_for_update() if lock else query)


def _live_count(session: Session, tenant: str) -> int:
    query = select(func.count()).select_from(RULES).where(RULES.c.tenant == tenant, RULES.c.is_latest == true())
    return int(session.scalar(query) or 0)


def _owner(principal: Principal, tenant: str | None) -> str:
    """The tenant whose rule a change applies to: the token's own; an all-tenant token's choice."""
    if principal.all_tenants:
        return tenant or ALL_TENANTS
    if tenant not in (None, principal.tenant):
        raise NotFound("no such routing rule")  # another tenant's rules do not exist for this token
    return principal.tenant


def _visible(principal: Principal, tenant: str | None) -> list[str]:
    """Whose rules the principal reads, in the order a name is looked up: its own, then the operators'."""
    if principal.all_tenants:
        return [tenant or ALL_TENANTS]
    if tenant is not None and tenant not in (principal.tenant, ALL_TENANTS):
        return []  # another tenant's: as if there were none
    return [tenant] if tenant is not None else [principal.tenant, ALL_TENANTS]


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
