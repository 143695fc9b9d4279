"""Which templates and capabilities are paused, as a dispatching process knows it: read from the
``queue_pauses`` table at most once per ``pause_refresh_s``, and answered from memory in between.

The coordinator dispatches thousands of steps a second, and each dispatch asks whether a pause
holds it: a set lookup, not a query. The price is a lag: a pause written by another process holds
this process's dispatches within ``pause_refresh_s`` (default 1 s), and a dispatch held here by a
pause another process has resumed meanwhile is sent by the orchestrators' release sweep
(:func:`orchestrator.sagas.queue_pauses.release_orphans`) within as long. A pause or resume
written through this process is seen here at once (:func:`forget`).

Books are kept per database engine: tests run several databases in one process.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.enums import PauseKind
from models.principal import ALL_TENANTS
from models.tables import QueuePause
from orchestrator.storage.pipeline import select_in_turn


def pause_key(kind: PauseKind | str, tenant: str, name: str) -> str:
    """What a saga's ``held_by`` names: ``capability:*:payments``, ``template:acme:order``."""
    return f"{kind}:{tenant}:{name}"


@dataclass(frozen=True)
class Pauses:
    """The pauses in force: for each template name and capability, the tenants it is paused for."""

    templates: dict[str, frozenset[str]] = field(default_factory=dict)
    capabilities: dict[str, frozenset[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.templates or self.capabilities)

    def holding(self, tenant: str, template: str, capability: str | None) -> str | None:
        """The key of the pause that holds a dispatch of a saga of ``tenant`` running ``template``
        onto ``capability`` (None: a work item's step), or None: none does. A template's pause
        comes first (its release, then, finds the capability's)."""
        tenants = self.templates.get(template)
        if tenants is not None:
            for who in (ALL_TENANTS, tenant):
                if who in tenants:
                    return pause_key(PauseKind.template, who, template)
        if capability is not None:
            tenants = self.capabilities.get(capability)
            if tenants is not None:
                for who in (ALL_TENANTS, tenant):
                    if who in tenants:
                        return pause_key(PauseKind.capability, who, capability)
        return None

    def keys(self) -> set[str]:
        """The key of every pause in force."""
        found = {pause_key(PauseKind.template, t, n) for n, ts in self.templates.items() for t in ts}
        found |= {pause_key(PauseKind.capability, t, n) for n, ts in self.capabilities.items() for t in ts}
        return found


NONE = Pauses()
_READ = select(QueuePause.kind, QueuePause.tenant, QueuePause.name)


def read_pauses(session: Session) -> Pauses:
    """The pauses in force, read now."""
    templates: dict[str, set[str]] = {}
    capabilities: dict[str, set[str]] = {}
    [rows] = select_in_turn(session, [(_READ, {})])
    for kind, tenant, name in rows:
        (templates if kind == PauseKind.template else capabilities).setdefault(name, set()).add(tenant)
    return Pauses(
        {n: frozenset(ts) for n, ts in templates.items()}, {n: frozenset(ts) for n, ts in capabilities.items()}
    )


class PauseBook:
    """One database's pauses as this process last read them (see the module)."""

    def __init__(self) -> None:
        self._pauses = NONE
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self, session: Session, max_age_s: float) -> Pauses:
        """The pauses, read again through ``session`` if the last read is older than ``max_age_s``."""
        if time.monotonic() - self._read_at < max_age_s:
            return self._pauses
        return self.refresh(session)

    def refresh(self, session: Session) -> Pauses:
        started = time.monotonic()
        pauses = read_pauses(session)
        with self._lock:
            # Two threads may read at once: the later read wins, never an older one.
            if started >= self._read_at:
                self._pauses, self._read_at = pauses, started
        return pauses

    def forget(self) -> None:
        """Read again at the next ask (a pause or resume was written through this process)."""
        self._read_at = float("-inf")


_BOOKS: weakref.WeakKeyDictionary[Engine, PauseBook] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()


def book_of(session: Session) -> PauseBook:
    """The book of the database ``session`` talks to."""
    engine = session.get_bind().engine
    book = _BOOKS.get(engine)
    if book is None:
        with _BOOKS_LOCK:
            book = _BOOKS.setdefault(engine, PauseBook())
    return book
