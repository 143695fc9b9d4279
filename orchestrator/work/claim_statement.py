"""A claim on PostgreSQL as one statement: pick, lock, claim, audit, and the lease's timers.

``claims.claim_next`` (and ``claims.claim``) on SQLite run as Python over the ORM: probe, then
change the item, then buffer its audit row and timers in the unit of work. On PostgreSQL that
cost about ten statements and five milliseconds of Python a claim, and the claimers queued on
the round trips. Here the same claim is one statement of data-modifying CTEs:

    probe_0..n  the candidate rows (``LIMIT 1 FOR UPDATE SKIP LOCKED`` each)
    picked      the best of them, in queue order
    taken       UPDATE work_items ... FROM picked  (only if nobody holds it) RETURNING the row
    audit       INSERT the ``claimed`` audit row from taken
    action      INSERT the agent's action (spec §13) from taken                    (agents)
    lease       upsert the ``lease_expiry`` timer from taken            (agents)
    stall       upsert (or delete) the ``stall_check`` timer from taken (agents)
    SELECT the pick's id, the claimed row (as JSON), its labels and dependencies

so a claim is one round trip besides BEGIN and COMMIT. It runs at the driver's level (see
``run``): the ORM's statement execution and row loading cost more Python than the rest.

The rows written are those the ORM path writes (``test_claim_statement.py`` in the work-item
integration tests compares them), with two differences nobody reads: every timestamp of the
claim is the one ``now``, and a timer the claim re-arms keeps its row (an upsert on its unique
key) instead of being deleted and inserted anew.

Two cases stay with the ORM path, in the same transaction, on the row this statement locked:
a pick whose previous holder's lease lapsed unswept (``taken`` is empty; the caller records the
expiry first, as ``claims._take`` does), and an item with its own stall ladder (a pydantic model
decides its rungs; the caller arms it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, class_mapper
from sqlalchemy.sql.selectable import CTE

from models.base import UTCDateTime, transient
from models.enums import TimerKind
from models.tables import TIMERS
from models.work_tables import DEPENDENCIES, EVENTS, LABELS, WORK_ITEMS, WorkItem
from orchestrator.storage import driver_sql
from orchestrator.storage.driver_sql import DriverStatement
from orchestrator.storage.unit_of_work import uow_of
from orchestrator.work.views import ItemValues

# The item comes back as one JSON object (``to_json``): a row of sixty columns cost more to
# describe and convert, in psycopg and SQLAlchemy, than the rest of the claim's Python. Its
# keys are the column names; these are the attributes they load, and the values JSON changes.
_ATTRIBUTES = {c.name: class_mapper(WorkItem).get_property_by_column(c).key for c in WORK_ITEMS.c}
_TIMESTAMPS = tuple(c.name for c in WORK_ITEMS.c if isinstance(c.type, UTCDateTime))
_FLOATS = tuple(c.name for c in WORK_ITEMS.c if isinstance(c.type, Float))


@dataclass(frozen=True)
class Claimed:
    """What the statement answered. Either it claimed the item: ``values``, the item as the
    database has it now (plain values, as the view reads them; the session forgets its own copy
    of the item if it had one), with its labels and dependencies. Or it picked an item whose
    previous holder's lease lapsed, and left it: ``lapsed``, that item loaded into the session,
    for the caller to take over."""

    values: ItemValues | None = None
    labels: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    lapsed: WorkItem | None = None

    def item(self) -> WorkItem:
        """The item claimed as a (transient) ORM object, for what needs one (its own stall ladder)."""
        assert self.values is not None
        return transient(WorkItem, **vars(self.values))


def supported(session: Session) -> bool:
    """PostgreSQL (data-modifying CTEs, ``FOR UPDATE SKIP LOCKED`` in them) through psycopg."""
    return driver_sql.supported(session)


def plan_generically(session: Session) -> None:
    """Have PostgreSQL run this transaction's claim statements on their one generic plan, one
    that reads by index only.

    It would otherwise weigh the generic plan against planning each claim anew, from its
    estimate for the lapsed-lease probe: a range of ``ix_work_items_lease`` (``< :now``), whose
    share of the table it takes for 0.5% when it does not know ``:now``. Over some thousands of
    items that looks dearer than planning, and every claim was planned (about 0.8 ms of the
    server's CPU). The generic plan is the right one: lapsed leases are few (the timer loop
    returns their items within seconds).

    Every read of a claim transaction is a lookup by key (an item's timers, its labels, an
    agent's actions on it) or a walk of an index in queue order. A sequential scan is never the
    right plan there, yet the planner picks one for a table its statistics say is small, and a
    table that was small at the last ``ANALYZE`` (timers, agents' actions) grows by a row or two
    with every claim: the ``claimed`` actions of a batch were numbered over a scan of every
    agent's action (0.33 ms a claim at 2,000 actions), and a claim without the stall clock
    looked for its item's stall timer over a scan of every timer (0.67 ms at 2,000), the cost
    of a claim growing with the claims since statistics were taken. So sequential scans are off
    in the transaction, and the plan kept is an index one. ``set_config(..., true)``: as ``SET
    LOCAL``, it ends with the transaction."""
    if supported(session):
        session.connection().exec_driver_sql(GENERIC_PLANS)


# What plan_generically runs (a pipeline of claims sends it first: ``claim_pipeline``).
GENERIC_PLANS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)"
)


def build(probes: Sequence[Select[Any]], *, lease: bool, stall: bool) -> DriverStatement:
    """The claim statement over ``probes`` (selects of work items, each ``LIMIT 1 FOR UPDATE SKIP
    LOCKED``). ``lease``: an agent's claim (a lease that expires, its timer and its stall clock);
    ``stall``: with the server's default stall ladder (else the claim only cancels the clock).

    Its bind parameters: ``kind``, ``ident``, ``actor``, ``now``, ``ttl_s``, ``expires`` and
    ``expires_iso`` (the lease's expiry, or None), ``stall_due`` and ``stall_rungs`` (with
    ``stall``), and the probes' own. Build it once per shape (compiling costs milliseconds)."""
    # A probe answers what the pick needs; the row itself comes back from the UPDATE.
    needs = (WorkItem.id, WorkItem.priority, WorkItem.created_at, WorkItem.claimed_by_id)
    ctes = [probe.with_only_columns(*needs).cte(f"probe_{n}") for n, probe in enumerate(probes)]
    if len(ctes) == 1:
        picked: CTE = ctes[0]
    else:
        candidates = union_all(*(select(cte) for cte in ctes)).subquery("candidates")
        order = (candidates.c.priority.desc(), candidates.c.created_at, candidates.c.id)
        picked = select(candidates).order_by(*order).limit(1).cte("picked")

    now = bindparam("now", type_=WORK_ITEMS.c.claimed_at.type)
    expires = bindparam("expires", type_=WORK_ITEMS.c.lease_expires_at.type)
    w = WORK_ITEMS.c
    taken = (
        update(WORK_ITEMS)
        .where(w.id == picked.c.id, picked.c.claimed_by_id.is_(None))
        .values(
            claimed_by_type=bindparam("kind", type_=String()),
            claimed_by_id=bindparam("ident", type_=String()),
            claimed_at=now,
            lease_epoch=w.lease_epoch + 1,
            lease_ttl_s=bindparam("ttl_s", type_=w.lease_ttl_s.type),
            lease_expires_at=expires,
            # SQL NULL, as the ORM writes a None it is given on an update.
            progress=null(),
            progress_at=now,
            stalled_at=null(),
            version=w.version + 1,
            updated_at=now,
        )
        .returning(*WORK_ITEMS.c)
        .cte("taken")
    )

    details: list[ColumnElement[Any]] = [_key("lease_epoch"), taken.c.lease_epoch]
    if lease:
        details += [_key("lease_expires_at"), bindparam("expires_iso", type_=String())]
    audit = (
        insert(EVENTS)
        .from_select(
            ["item_id", "tenant", "action", "actor", "details", "at"],
            select(
                taken.c.id,
                taken.c.tenant,
                literal_column("'claimed'", String()),
                bindparam("actor", type_=String()),
                func.json_build_object(*details),
                now,
            ),
        )
        .cte("audit")
    )
    ctes_written = [audit]
    if lease:
        epoch = func.json_build_object(_key("lease_epoch"), taken.c.lease_epoch)
        ctes_written.append(_arm(taken, TimerKind.lease_expiry, epoch, expires, now).cte("lease"))
        # The stall clock is armed here only for items without their own ladder; the caller arms theirs.
        default_ladder = or_(taken.c.stall.is_(None), func.json_typeof(taken.c.stall) == "null")
        if stall:
            payload = func.json_build_object(
                _key("lease_epoch"),
                taken.c.lease_epoch,
                _key("step"),
                literal_column("0"),
                _key("rungs"),
                bindparam("stall_rungs", type_=JSON()),
            )
            due = bindparam("stall_due", type_=TIMERS.c.due_at.type)
            ctes_written.append(_arm(taken, TimerKind.stall_check, payload, due, now, default_ladder).cte("stall"))
        else:
            # The key as a value (a subquery of the one row taken), so that the timer is looked
            # up by its unique index: joined to ``taken``, the planner walked every timer.
            key = select(_timer_key(TimerKind.stall_check, taken.c.id)).where(default_ladder).scalar_subquery()
            ctes_written.append(delete(TIMERS).where(TIMERS.c.key == key).cte("stall"))

    # One row when a probe found one: the pick, and the item as claimed (all null when its
    # previous holder's lease lapsed: then nothing was written).
    labels = _aggregate(LABELS.c.label, LABELS.c.item_id == taken.c.id)
    dependencies = _aggregate(DEPENDENCIES.c.depends_on_id, DEPENDENCIES.c.item_id == taken.c.id)
    final = select(
        picked.c.id.label("picked_id"),
        func.to_json(literal_column(taken.name)).label("item"),
        labels.label("labels"),
        dependencies.label("dependencies"),
    ).select_from(picked.outerjoin(taken, true()))
    # The written CTEs run whether or not anything reads them; naming them keeps them in the WITH.
    for cte in ctes_written:
        final = final.add_cte(cte)
    return driver_sql.compile_statement(final)


def run(session: Session, statement: DriverStatement, params: dict[str, Any]) -> Claimed | None:
    """Run a statement of :func:`build` with ``params`` (see there): the item claimed (or
    picked: see :class:`Claimed`), or None when no probe found one."""
    flush(session)
    # At the driver's level, the text prepared once per connection (psycopg rewrote this 9 kB
    # statement's placeholders on every call: 150 us a claim).
    return claimed(session, driver_sql.execute(session, statement, params).first())


def flush(session: Session) -> None:
    """Write what the transaction changed and buffered so far, for a claim statement to see it
    (a driver-level statement does not autoflush)."""
    uow = uow_of(session)
    if uow.pending:
        # Its audit rows and timer changes are written ahead of the statement's, which would
        # otherwise overtake them.
        uow.write(session)
    else:
        session.flush()  # the ORM's own changes


def lapsed(row: Sequence[Any] | None) -> bool:
    """Whether a claim statement's answer is a pick it did not claim: its previous holder's lease lapsed."""
    return row is not None and row[1] is None


def claimed(session: Session, row: Sequence[Any] | None) -> Claimed | None:
    """What a claim statement's row says (see :class:`Claimed`); None for no row, nothing to claim."""
    if row is None:
        return None
    picked_id, values, labels, dependencies = row
    if values is None:
        # Not claimed: its previous holder's lease lapsed. This transaction holds its row lock.
        pick = select(WorkItem).where(WorkItem.id == picked_id).execution_options(populate_existing=True)
        return Claimed(lapsed=session.scalars(pick).one())
    loaded = session.identity_map.get(Session.identity_key(WorkItem, picked_id))
    if loaded is not None:
        # The session's own copy of the item is out of date: it reloads when next read.
        session.expire(loaded)
    return Claimed(ItemValues(**_loaded(values)), list(labels or ()), list(dependencies or ()))


def claim_params(
    kind: str, ident: str, actor: str, now: datetime, ttl_s: float | None, expires: datetime | None
) -> dict[str, Any]:
    """The claim's own bind parameters (the probes' are the caller's). Values as the driver
    takes them: aware datetimes, lists for arrays, JSON as text."""
    return {
        "kind": kind,
        "ident": ident,
        "actor": actor,
        "now": now,
        "ttl_s": ttl_s,
        "expires": expires,
        "expires_iso": expires.isoformat() if expires is not None else None,
    }


def _loaded(values: dict[str, Any]) -> dict[str, Any]:
    """The item's attributes from its JSON object: as the ORM would have loaded them."""
    for name in _TIMESTAMPS:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name]).astimezone(UTC)
    for name in _FLOATS:
        if values[name] is not None:
            values[name] = float(values[name])
    return {_ATTRIBUTES[name]: value for name, value in values.items()}


def stall_params(due: datetime, rungs: list[dict[str, object]] | str) -> dict[str, Any]:
    """The parameters of a statement built with ``stall``: the stall clock's first rung (its
    rungs as a list, or as JSON text already)."""
    return {"stall_due": due, "stall_rungs": rungs if isinstance(rungs, str) else json.dumps(rungs)}


def _aggregate(column: ColumnElement[str], where: ColumnElement[bool]) -> ColumnElement[Any]:
    """The item's values of ``column`` (labels, dependencies) as one JSON array, in order; null for none."""
    return select(func.json_agg(aggregate_order_by(column, column))).where(where).scalar_subquery()


def _key(name: str) -> ColumnElement[Any]:
    # A constant key of json_build_object: a literal, as a bound parameter would have no type.
    return literal_column(f"'{name}'", String())


def _timer_key(kind: TimerKind, item_id: ColumnElement[Any]) -> ColumnElement[Any]:
    # As claims.lease_timer_key and stalls.timer_key spell it.
    return literal_column(f"'{kind.value}:'", String()) + item_id


def _arm(
    taken: CTE,
    kind: TimerKind,
    payload: ColumnElement[Any],
    due: ColumnElement[Any],
    now: ColumnElement[Any],
    *where: ColumnElement[bool],
) -> Any:
    """Upsert the item's timer of ``kind`` (one per item: a new claim's replaces the last one's)."""
    rows = select(
        _timer_key(kind, taken.c.id),
        literal_column(f"'{kind.value}'", String()),
        null(),
        taken.c.id,
        payload,
        due,
        now,
    ).where(and_(*where) if where else literal_column("true"))
    upsert = pg_insert(TIMERS).from_select(
        ["key", "kind", "saga_id", "item_id", "payload", "due_at", "created_at"], rows
    )
    return upsert.on_conflict_do_update(
        index_elements=[TIMERS.c.key],
        set_={c: upsert.excluded[c] for c in ("kind", "saga_id", "item_id", "payload", "due_at", "created_at")},
    )
