"""Claims: exclusive claims, agents' leases and their expiry (who may take an item: ``offers``).

A claim is exclusive. An agent's claim is a lease with a TTL that heartbeats extend; when it
lapses the item goes back to the queue (audited). Every claim bumps ``lease_epoch``, and every
call a holder makes afterwards names the epoch it got, so a holder that lost its lease (and
perhaps re-claimed later) cannot complete on the strength of the old claim.

On PostgreSQL candidate rows are taken with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers
never queue up behind each other, and a claim is one statement (``claim_statement``); on SQLite
the transaction holds the database's write lock, and a claim goes through the ORM.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import TimerKind
from models.principal import Principal, PrincipalType, Scope
from models.tables import Timer
from models.work_api import WorkItemRead
from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.agents import record_spend
from orchestrator.errors import Conflict, Forbidden, InvalidInput, PayloadTooLarge
from orchestrator.storage.driver_sql import DriverStatement
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.traceability import actions
from orchestrator.work import audit, claim_statement, offers, routing_hooks, stalls
from orchestrator.work.access import require
from orchestrator.work.items import touch
from orchestrator.work.offers import claimable, offered_to
from orchestrator.work.transitions import lifecycle_of, move, release_claim
from orchestrator.work.types import types_of
from orchestrator.work.views import item_view, load_item, read_items


def claim(
    session: Session,
    principal: Principal,
    item_id: str,
    *,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None = None,
) -> WorkItemRead:
    require(principal, Scope.work_claim)
    now = utcnow()
    if claim_statement.supported(session):
        params = {**_probe_params(principal, now), "item_id": item_id}
        claimed = _claim_at_once(
            session, principal, params, now, ttl_s, default_ttl_s, default_stall_after_s, by_id=True
        )
        if claimed is None:
            raise _why_not_claimable(session, principal, item_id, now)
        return claimed
    item = session.scalar(
        select(WorkItem).where(WorkItem.id == item_id, claimable(principal, now)).with_for_update(skip_locked=True)
    )
    if item is None:
        raise _why_not_claimable(session, principal, item_id, now)
    _take(session, item, principal, now, ttl_s, default_ttl_s, default_stall_after_s)
    return read_items(session, [item])[0]


def claim_next(
    session: Session,
    principal: Principal,
    *,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None = None,
    now: datetime | None = None,
) -> WorkItemRead | None:
    """Claim the best item offered to the principal that it can go to work on now (see
    ``actionable``): highest priority, then oldest. ``now``: the claim's time, when the caller
    claims for several principals in one transaction (``claim_batches``)."""
    require(principal, Scope.work_claim)
    now = now or utcnow()
    # Three probes instead of one OR-ed query, so that each walks an index in queue order and
    # stops at its first free row: the open queue (the partial index ix_work_items_offered), items
    # assigned to the caller, and items whose holder's lease lapsed. Then the best of the three.
    params = _probe_params(principal, now)
    if claim_statement.supported(session):
        return _claim_at_once(session, principal, params, now, ttl_s, default_ttl_s, default_stall_after_s)
    found = [
        candidate
        for probe in offers.probes(*_shape(principal))
        if (candidate := session.scalars(probe, params).first()) is not None
    ]
    item = min(found, key=lambda i: (-i.priority, i.created_at, i.id), default=None)
    if item is None:
        return None
    _take(session, item, principal, now, ttl_s, default_ttl_s, default_stall_after_s)
    return read_items(session, [item])[0]


def _probe_params(principal: Principal, now: datetime) -> dict[str, Any]:
    return {
        "callers_tenant": principal.tenant,
        "kind": principal.type.value,
        "ident": principal.id,
        "now": now,
        "capabilities": sorted(principal.capabilities),
        "scopes": sorted(principal.scopes),
        "groups": sorted(principal.groups),
    }


def _shape(principal: Principal) -> tuple[bool, bool, bool]:
    return principal.type is PrincipalType.agent, principal.all_tenants, principal.has(Scope.admin.value)


@lru_cache(maxsize=64)
def _statement(shape: tuple[bool, bool, bool], by_id: bool, stall: bool) -> DriverStatement:
    agent = shape[0]
    return claim_statement.build(offers.probes(*shape, by_id=by_id, arrays=True), lease=agent, stall=agent and stall)


def _claim_at_once(
    session: Session,
    principal: Principal,
    params: dict[str, Any],
    now: datetime,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None,
    *,
    by_id: bool = False,
) -> WorkItemRead | None:
    """``_take`` on PostgreSQL: the pick and the claim in one statement (``claim_statement``)."""
    statement, params = at_once(principal, params, now, ttl_s, default_ttl_s, default_stall_after_s, by_id=by_id)
    claimed = claim_statement.run(session, statement, params)
    return answer(session, principal, claimed, now, ttl_s, default_ttl_s, default_stall_after_s)


def next_at_once(
    principal: Principal, now: datetime, ttl_s: float | None, default_ttl_s: float, default_stall_after_s: float | None
) -> tuple[DriverStatement, dict[str, Any]]:
    """claim-next on PostgreSQL as one statement and its parameters, to run where the caller
    runs it (``claim_pipeline``: with others); then :func:`answer` what it answered."""
    require(principal, Scope.work_claim)
    params = _probe_params(principal, now)
    return at_once(principal, params, now, ttl_s, default_ttl_s, default_stall_after_s, by_id=False)


def at_once(
    principal: Principal,
    params: dict[str, Any],
    now: datetime,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None,
    *,
    by_id: bool,
) -> tuple[DriverStatement, dict[str, Any]]:
    """The claim statement for the principal, and its parameters (``params``, the probes', with the claim's)."""
    agent = principal.type is PrincipalType.agent
    expires = now + timedelta(seconds=ttl_s or default_ttl_s) if agent else None
    params |= claim_statement.claim_params(principal.type.value, principal.id, principal.ref, now, ttl_s, expires)
    stall = agent and default_stall_after_s is not None
    if stall:
        params |= claim_statement.stall_params(*_first_rung(default_stall_after_s, now))
    return _statement(_shape(principal), by_id, stall), params


def _first_rung(default_stall_after_s: float | None, now: datetime) -> tuple[datetime, str]:
    """The server's stall ladder's first rung for a clock started ``now``: when it is due, and
    the rungs as the timer's payload holds them (JSON text)."""
    after, rungs = _default_rungs(default_stall_after_s)
    return now + after, rungs


@lru_cache(maxsize=8)
def _default_rungs(default_stall_after_s: float | None) -> tuple[timedelta, str]:
    # Once per setting: building the ladder's models and their JSON for every claim cost more
    # than a tenth of a claim's Python.
    start = datetime(2000, 1, 1, tzinfo=UTC)
    due, rungs = stalls.first_rung(stalls.default_ladder(default_stall_after_s), start)
    return due - start, json.dumps(rungs)


def answer(
    session: Session,
    principal: Principal,
    claimed: claim_statement.Claimed | None,
    now: datetime,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None,
) -> WorkItemRead | None:
    """What a claim statement of :func:`at_once` answered, finished: the item claimed (its
    traceability action, its own stall ladder, a pick whose holder's lease lapsed taken over
    through the ORM), or None when there was nothing to claim."""
    if claimed is None:
        return None
    if claimed.lapsed is not None:
        # The pick's holder's lease lapsed unswept: the expiry is recorded before the claim.
        _take(session, claimed.lapsed, principal, now, ttl_s, default_ttl_s, default_stall_after_s)
        return read_items(session, [claimed.lapsed])[0]
    item = claimed.values
    assert item is not None
    if principal.type is PrincipalType.agent:
        # An agent's claim is an action (spec §13), numbered after the agent's last on the item. Not
        # in the statement: its reads share the snapshot taken before it locked the row, and an
        # action the agent committed on the item meanwhile (evidence) would be numbered again.
        actions.record_claim(session, item.id, item.tenant, principal.id, now)
        if item.stall is not None:
            # Its own stall ladder: the statement left its clock to this.
            stalls.arm(session, claimed.item(), default_stall_after_s, now)
    types = types_of(session, {item.type})
    return item_view(item, claimed.labels, claimed.dependencies, types.get(item.type))


def _take(
    session: Session,
    item: WorkItem,
    principal: Principal,
    now: datetime,
    ttl_s: float | None,
    default_ttl_s: float,
    default_stall_after_s: float | None,
) -> None:
    if item.claimed_by_id is not None:
        # The previous holder's lease lapsed and nobody swept it yet: record that first.
        _expire(session, item)
    item.claimed_by_type = principal.type.value
    item.claimed_by_id = principal.id
    item.claimed_at = now
    item.lease_epoch += 1
    # Kept, so a heartbeat without a TTL extends by the claim's own (None: the server default).
    item.lease_ttl_s = ttl_s
    item.lease_expires_at = (
        now + timedelta(seconds=ttl_s or default_ttl_s) if principal.type is PrincipalType.agent else None
    )
    # A new holder's progress starts from nothing, now.
    item.progress = None
    item.progress_at = now
    item.stalled_at = None
    touch(item)
    details: dict[str, Any] = {"lease_epoch": item.lease_epoch}
    if item.lease_expires_at is not None:
        details["lease_expires_at"] = item.lease_expires_at.isoformat()
    audit.record(session, item, "claimed", principal.ref, details=details)
    if item.lease_expires_at is not None:
        arm_lease_timer(session, item)
        # A live lease says the agent is alive, not that it is getting anywhere: its progress is watched too.
        stalls.arm(session, item, default_stall_after_s, now)


def _why_not_claimable(session: Session, principal: Principal, item_id: str, now: datetime) -> Exception:
    item = load_item(session, principal, item_id)
    if not item.is_open:
        return Conflict(f"{item_id} is {item.status}; there is nothing left to claim")
    if item.claimed_by_id is not None and not (item.lease_expires_at is not None and item.lease_expires_at < now):
        return Conflict(f"{item_id} is claimed by {item.claimed_by_type}:{item.claimed_by_id}")
    if session.scalar(select(WorkItem.id).where(WorkItem.id == item_id, offered_to(principal))) is None:
        return Forbidden(f"{item_id} is not offered to {principal.ref}")
    # Offered, open and free, yet not returned: another claimer holds its row lock right now.
    return Conflict(f"{item_id} is being claimed by someone else")


def holder_item(session: Session, principal: Principal, item_id: str, lease_epoch: int | None) -> WorkItem:
    """The item, locked, if the principal holds a live claim on it at ``lease_epoch``; else 409."""
    require(principal, Scope.work_claim)
    item = load_item(session, principal, item_id, lock=True)
    now = utcnow()
    if item.claimed_by_id != principal.id or item.claimed_by_type != principal.type.value:
        holder = f"{item.claimed_by_type}:{item.claimed_by_id}" if item.claimed_by_id else "nobody"
        raise Conflict(f"{principal.ref} does not hold {item_id} (held by {holder})")
    if item.lease_expires_at is not None and lease_epoch is None:
        raise InvalidInput(
            "an agent's lease needs the lease_epoch its claim returned",
            details=[{"path": "lease_epoch", "message": "required while the claim is a lease"}],
        )
    if lease_epoch is not None and lease_epoch != item.lease_epoch:
        raise Conflict(f"lease epoch {lease_epoch} is stale; {item_id} was claimed again (epoch {item.lease_epoch})")
    if item.lease_expires_at is not None and item.lease_expires_at <= now:
        raise Conflict(f"the lease on {item_id} expired at {item.lease_expires_at.isoformat()}; claim it again")
    return item


def heartbeat(
    session: Session,
    principal: Principal,
    item_id: str,
    lease_epoch: int,
    *,
    ttl_s: float | None,
    default_ttl_s: float,
    progress: Any = None,
) -> WorkItemRead:
    """Extend the lease by the claim's TTL (or by ``ttl_s``, which then holds for later beats
    too), and record ``progress`` when it changed: a holder that beats without progress is alive
    but maybe stalled."""
    item = holder_item(session, principal, item_id, lease_epoch)
    now = utcnow()
    if ttl_s is not None:
        item.lease_ttl_s = ttl_s
    if progress is not None and progress != item.progress:
        item.progress = progress
        item.progress_at = now
        stalls.progressed(session, item, principal.ref, now)
    if item.lease_expires_at is not None:
        item.lease_expires_at = now + timedelta(seconds=item.lease_ttl_s or default_ttl_s)
        # The lease's timer moves with it (one UPDATE): it fires only if no beat comes in time.
        uow_of(session).move_timer(lease_timer_key(item.id), item.lease_expires_at)
    return read_items(session, [item])[0]


def release(
    session: Session, principal: Principal, item_id: str, lease_epoch: int | None, reason: str | None
) -> WorkItemRead:
    item = holder_item(session, principal, item_id, lease_epoch)
    release_claim(item)
    touch(item)
    audit.record(session, item, "released", principal.ref, reason=reason, details={"lease_epoch": item.lease_epoch})
    return read_items(session, [item])[0]


def start(
    session: Session,
    principal: Principal,
    item_id: str,
    lease_epoch: int | None,
    *,
    default_ttl_s: float,
    default_stall_after_s: float | None = None,
) -> WorkItemRead:
    """Claim (if the caller does not hold it yet) and start, in one transaction.

    Work already underway is resumed: by a holder's successor (audited as ``resumed``), or
    answered as it is when the caller's claim started it already (a retried start)."""
    require(principal, Scope.work_claim)
    current = load_item(session, principal, item_id)
    if current.claimed_by_id != principal.id or current.claimed_by_type != principal.type.value:
        lease_epoch = claim(
            session,
            principal,
            item_id,
            ttl_s=None,
            default_ttl_s=default_ttl_s,
            default_stall_after_s=default_stall_after_s,
        ).lease_epoch
    item = holder_item(session, principal, item_id, lease_epoch)
    lc = lifecycle_of(item)
    if item.status in lc.underway:
        if not _started_by_this_claim(session, item, principal):
            details = {"lease_epoch": item.lease_epoch, "status": item.status}
            audit.record(session, item, "resumed", principal.ref, details=details)
            touch(item)
        return read_items(session, [item])[0]
    target = lc.start.get(item.status)
    if target is None:
        raise _no_action(item, "start")
    move(session, item, target, principal.ref, action="started", details={"lease_epoch": item.lease_epoch})
    return read_items(session, [item])[0]


def _started_by_this_claim(session: Session, item: WorkItem, principal: Principal) -> bool:
    # Every claim is audited, so the claim's own start or resume is the last of the three.
    last = session.scalar(
        select(WorkItemEvent)
        .where(WorkItemEvent.item_id == item.id, WorkItemEvent.action.in_(("claimed", "started", "resumed")))
        .order_by(WorkItemEvent.id.desc())
        .limit(1)
    )
    return last is not None and last.action != "claimed" and last.actor == principal.ref


def complete(
    session: Session,
    principal: Principal,
    item_id: str,
    lease_epoch: int | None,
    result: Any,
    *,
    max_result_bytes: int | None = None,
    cost: float | None = None,
) -> WorkItemRead:
    """Complete the held item with ``result``. A retry of the same call answers as the first did
    (see ``_retry_of``). ``cost`` is added to the calling agent's budget spend, once."""
    if max_result_bytes is not None:
        # The result is kept on the item and handed to the saga: held to the payload's limit.
        size = len(json.dumps(result, separators=(",", ":")))
        if size > max_result_bytes:
            raise PayloadTooLarge(
                f"the result is {size} bytes; the limit is {max_result_bytes} (WORKYARD_WORK_ITEM_MAX_PAYLOAD_BYTES)",
                details=[{"path": "result", "message": f"{size} bytes > {max_result_bytes}"}],
            )
    digest = _digest(result)
    try:
        item = holder_item(session, principal, item_id, lease_epoch)
    except Conflict:
        retried = _retry_of(session, principal, item_id, lease_epoch, "completed", "result", digest)
        if retried is None:
            raise
        return retried
    target = lifecycle_of(item).complete.get(item.status)
    if target is None:
        raise _no_action(item, "complete")
    item.result = result
    details = {"lease_epoch": item.lease_epoch, "result_sha256": digest}
    move(session, item, target, principal.ref, action="completed", details=details)
    _spend(session, principal, cost)
    if item.claimed_by_id is not None:
        # The holder's part is done; whoever acts next (a reviewer) claims it anew.
        release_claim(item)
    return read_items(session, [item])[0]


def fail(
    session: Session,
    principal: Principal,
    item_id: str,
    lease_epoch: int | None,
    reason: str,
    *,
    cost: float | None = None,
) -> WorkItemRead:
    try:
        item = holder_item(session, principal, item_id, lease_epoch)
    except Conflict:
        retried = _retry_of(session, principal, item_id, lease_epoch, "failed", "reason", _digest(reason))
        if retried is None:
            raise
        return retried
    target = lifecycle_of(item).fail.get(item.status)
    if target is None:
        raise _no_action(item, "fail")
    if routing_hooks.holder_failed(session, item, principal, reason, cost):
        return read_items(session, [item])[0]  # given to another agent instead: it stays open
    item.reason = reason
    details = {"lease_epoch": item.lease_epoch, "reason_sha256": _digest(reason)}
    move(session, item, target, principal.ref, action="failed", reason=reason, details=details)
    _spend(session, principal, cost)
    release_claim(item)
    return read_items(session, [item])[0]


def _spend(session: Session, principal: Principal, cost: float | None) -> None:
    # In the call's own transaction, and not on a retry: the spend counts exactly when the
    # completion (or failure) does.
    if cost is not None and principal.type is PrincipalType.agent:
        record_spend(session, principal.tenant, principal.id, cost)


def _retry_of(
    session: Session,
    principal: Principal,
    item_id: str,
    lease_epoch: int | None,
    action: str,
    what: str,
    digest: str,
) -> WorkItemRead | None:
    """The item, if this call repeats the caller's own last ``action`` on it (same claim, same
    body): agents retry a complete whose answer a timeout lost, and get what the first got.
    None when it is no retry; a 409 when it is the same claim with another body."""
    item = load_item(session, principal, item_id)
    # The last claim or move of the item: a retry finds the caller's own action there. A claim
    # since, or a move since (the reporter sent it back), means the item moved on: not a retry.
    last = session.scalar(
        select(WorkItemEvent)
        .where(
            WorkItemEvent.item_id == item_id,
            or_(WorkItemEvent.action == "claimed", WorkItemEvent.to_status.is_not(None)),
        )
        .order_by(WorkItemEvent.id.desc())
        .limit(1)
    )
    if last is None or last.action != action or last.actor != principal.ref:
        return None
    epoch = last.details.get("lease_epoch")
    # A claim since then, or another epoch than the one acted under: not the same call.
    if epoch != item.lease_epoch or (lease_epoch is not None and lease_epoch != epoch):
        return None
    if last.details.get(f"{what}_sha256") != digest:
        raise Conflict(
            f"{item_id} was already {action} by {principal.ref} under lease epoch {epoch} with another {what}; "
            "a retry must send the same body",
            details=[{"path": what, "message": f"differs from the {what} it was {action} with"}],
        )
    return read_items(session, [item])[0]


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lease_timer_key(item_id: str) -> str:
    return f"{TimerKind.lease_expiry.value}:{item_id}"


def arm_lease_timer(session: Session, item: WorkItem) -> None:
    """The durable timer that returns the item to its queue when this claim's lease lapses."""
    assert item.lease_expires_at is not None
    key = lease_timer_key(item.id)
    uow = uow_of(session)
    # One per item: a new claim replaces the last claim's timer.
    uow.cancel_timer(key)
    now = utcnow()
    uow.arm_timer(
        key,
        TimerKind.lease_expiry,
        item.lease_expires_at,
        now,
        item_id=item.id,
        payload={"lease_epoch": item.lease_epoch},
    )


def fire_lease_timer(session: Session, timer: Timer, item: WorkItem | None, now: datetime) -> None:
    """A lease timer is due: if the claim it was set for still holds and its lease has lapsed,
    the item goes back to its queue (audited). A claim released, completed or replaced since
    leaves nothing to do; a lease a beat extended past ``now`` re-arms the timer instead."""
    if item is None or item.claimed_by_id is None or item.lease_expires_at is None:
        return
    if item.lease_epoch != timer.payload.get("lease_epoch"):
        return
    if item.lease_expires_at > now:
        timer.due_at = item.lease_expires_at  # the timer loop keeps a timer pushed into the future
        return
    _expire(session, item)
    touch(item)
    routing_hooks.lease_expired(session, item)


def _expire(session: Session, item: WorkItem) -> None:
    holder = f"{item.claimed_by_type}:{item.claimed_by_id}"
    expired_at = item.lease_expires_at.isoformat() if item.lease_expires_at else None
    release_claim(item)
    audit.record(
        session,
        item,
        "lease_expired",
        "system",
        # The status tells whether the holder left work underway (the next holder resumes it).
        details={"holder": holder, "lease_epoch": item.lease_epoch, "expired_at": expired_at, "status": item.status},
    )


def _no_action(item: WorkItem, action: str) -> Conflict:
    lc = lifecycle_of(item)
    allowed_from = sorted(getattr(lc, action))
    return Conflict(
        f"cannot {action} {item.id} while it is {item.status} (the {lc.name} lifecycle allows {action} from: "
        f"{', '.join(allowed_from) or 'nowhere'})",
        details=[
            {
                "path": "status",
                "message": f"{action} is allowed from: {', '.join(allowed_from) or 'nowhere'}",
                "status": item.status,
                "action": action,
                "allowed_from": allowed_from,
            }
        ],
    )
