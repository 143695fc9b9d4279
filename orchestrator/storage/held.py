"""Saga runs, their step runs and their running attempts, held under the sagas' row locks for one
transaction: read and written with plain statements, not through the ORM's session.

The coordinator applies every report batch this way, and under a steady pace a batch is mostly
a single report: the ORM's per-transaction machinery (loading into the identity map, a
``selectin`` load of the step runs, the unit-of-work flush) was most of what a batch cost in
CPU. Here a saga's rows are read with one SELECT per table, built into instances of the mapped
classes that belong to no session (:func:`models.base.transient`), and changed by the saga
engine as ORM-loaded ones would be. As the transaction commits, the unit of work writes the
rows that changed (:meth:`Held.write`): one UPDATE per table and set of columns, an executemany
for many rows, before the rows it inserts.

Within a transaction a row is held once: asking again for a saga already held gives back the
same object, with what changed on it so far, as the session's identity map would. What the
transaction reads with SQL sees the held rows as they were until the commit writes them; the
saga engine reads them through the objects only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import Update

from models.base import Base, transient
from models.enums import Outcome
from models.tables import ATTEMPTS, SAGAS, STEPS, SagaRun, StepAttempt, StepRun
from orchestrator.storage.pipeline import json_values, select_in_turn, write

M = TypeVar("M", bound=Base)

# A changed row of these tables gets at least these columns in its SET list, so that rows
# changed in different ways still share one statement (one executemany per table).
_UNIFORM: dict[str, tuple[str, ...]] = {
    SAGAS.name: ("state", "results", "error", "updated_at", "finished_at"),
    STEPS.name: ("state", "attempts", "compensation_attempts", "current_attempt", "error", "started_at", "finished_at"),
    ATTEMPTS.name: ("outcome", "worker", "error", "started_at", "finished_at"),
}


def _among(column: ColumnElement[Any], postgresql: bool) -> ColumnElement[bool]:
    """``column`` among the parameter ``ids``, one parameter however many (a statement sent
    past SQLAlchemy cannot expand an IN list): an array on PostgreSQL, a JSON array on SQLite."""
    if postgresql:
        return column == func.any(bindparam("ids", type_=ARRAY(column.type)))
    return column.in_(json_values("ids", column))


class _Reads:
    """The statements that read held rows, for one dialect (built once)."""

    def __init__(self, postgresql: bool):
        self.lock = select(SAGAS).where(_among(SAGAS.c.id, postgresql)).order_by(SAGAS.c.id).with_for_update()
        self.steps = select(STEPS).where(_among(STEPS.c.saga_id, postgresql)).order_by(STEPS.c.saga_id, STEPS.c.index)
        self.running = select(ATTEMPTS).where(
            _among(ATTEMPTS.c.saga_id, postgresql), ATTEMPTS.c.outcome == Outcome.running
        )


_READS = {True: _Reads(postgresql=True), False: _Reads(postgresql=False)}


def _columns(table: Table, cls: type[Base]) -> tuple[str, ...]:
    names = tuple(column.key for column in table.c)
    # Rows become objects by name: every column is the attribute of the same name.
    assert all(hasattr(cls, name) for name in names), f"{cls.__name__} attributes differ from {table.name} columns"
    return names


_SAGA_COLUMNS = _columns(SAGAS, SagaRun)
_STEP_COLUMNS = _columns(STEPS, StepRun)
_ATTEMPT_COLUMNS = _columns(ATTEMPTS, StepAttempt)
_ATTEMPT_ID = _ATTEMPT_COLUMNS.index("id")


class _Kind:
    """How the rows of one table are held: their columns, key, and the UPDATE that writes them."""

    def __init__(self, table: Table, columns: tuple[str, ...]):
        self.table = table
        self.columns = columns
        self.key = tuple(column.key for column in table.primary_key.columns)
        self.uniform = _UNIFORM[table.name]
        # Without a SET list: the executemany's parameter keys (besides the key's) make it.
        self.update: Update = update(table).where(*(table.c[name] == bindparam(f"key_{name}") for name in self.key))


_KINDS: dict[type[Base], _Kind] = {
    cls: _Kind(table, columns)
    for cls, table, columns in (
        (SagaRun, SAGAS, _SAGA_COLUMNS),
        (StepRun, STEPS, _STEP_COLUMNS),
        (StepAttempt, ATTEMPTS, _ATTEMPT_COLUMNS),
    )
}


class Held:
    """The saga runs, step runs and attempts one transaction holds (see the module)."""

    def __init__(self) -> None:
        self.sagas: dict[str, SagaRun] = {}
        self.attempts: dict[int, StepAttempt] = {}
        # The sagas whose running attempts have been read.
        self._running_read: set[str] = set()
        # Each held object with its column values as last read or written.
        self._rows: list[tuple[Base, tuple[Any, ...]]] = []

    def __bool__(self) -> bool:
        return bool(self._rows)

    def lock_sagas(self, session: Session, saga_ids: Iterable[str], *, running: bool = False) -> dict[str, SagaRun]:
        """The sagas (those that exist), row-locked in id order, with their step runs; with
        ``running``, the running attempts of those it locks now are read along (for
        :meth:`running_attempts`). On PostgreSQL the statements go in one round trip: each one
        after the lock reads what was committed while it waited for it."""
        ids = sorted(set(saga_ids))
        wanted = [i for i in ids if i not in self.sagas]
        if wanted:
            reads = _READS[session.get_bind().dialect.name == "postgresql"]
            statements = [(reads.lock, {"ids": wanted}), (reads.steps, {"ids": wanted})]
            if running:
                statements.append((reads.running, {"ids": wanted}))
            sagas, steps, *attempts = select_in_turn(session, statements)
            found = [self._hold(SagaRun, row) for row in sagas]
            held_steps: dict[str, list[StepRun]] = {saga.id: [] for saga in found}
            for row in steps:
                step = self._hold(StepRun, row)
                held_steps[step.saga_id].append(step)
            for saga in found:
                saga.__dict__["steps"] = held_steps[saga.id]
                self.sagas[saga.id] = saga
            if running:
                for row in attempts[0]:
                    self._attempt(row)
                self._running_read.update(wanted)
        return {i: self.sagas[i] for i in ids if i in self.sagas}

    def running_attempts(self, session: Session, saga_ids: Iterable[str]) -> list[StepAttempt]:
        """The running attempts of sagas this transaction has locked (read now unless they were
        read along with the sagas' locks)."""
        ids = set(saga_ids)
        unread = sorted(ids - self._running_read)
        if unread:
            reads = _READS[session.get_bind().dialect.name == "postgresql"]
            [rows] = select_in_turn(session, [(reads.running, {"ids": unread})])
            for row in rows:
                self._attempt(row)
            self._running_read.update(unread)
        return [a for a in self.attempts.values() if a.saga_id in ids and a.outcome is Outcome.running]

    def _attempt(self, row: Sequence[Any]) -> None:
        if row[_ATTEMPT_ID] not in self.attempts:
            attempt = self._hold(StepAttempt, row)
            self.attempts[attempt.id] = attempt

    def _hold(self, cls: type[M], row: Sequence[Any]) -> M:
        kind = _KINDS[cls]
        values = tuple(row)
        instance = transient(cls, **dict(zip(kind.columns, values, strict=True)))
        self._rows.append((instance, values))
        return instance

    def write(self, session: Session) -> None:
        """Write the rows that changed since they were read (or last written)."""
        groups: dict[tuple[type, tuple[str, ...]], list[dict[str, Any]]] = {}
        for n, (instance, before) in enumerate(self._rows):
            kind = _KINDS[type(instance)]
            values = instance.__dict__
            after = tuple(values[name] for name in kind.columns)
            changed = [
                name
                for name, old, new in zip(kind.columns, before, after, strict=True)
                if new is not old and new != old
            ]
            if not changed:
                continue
            names = tuple(dict.fromkeys((*kind.uniform, *changed)))
            row = {name: values[name] for name in names}
            row.update({f"key_{name}": values[name] for name in kind.key})
            groups.setdefault((type(instance), names), []).append(row)
            self._rows[n] = (instance, after)
        for (cls, _names), rows in groups.items():
            write(session, _KINDS[cls].update, rows)

    def clear(self) -> None:
        self.sagas.clear()
        self.attempts.clear()
        self._running_read.clear()
        self._rows.clear()
