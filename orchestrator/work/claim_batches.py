"""claim-next calls of one process served together: a few claim transactions, each claiming for
every call that waits.

Each claim-next in its own transaction cost PostgreSQL a ``BEGIN``, a ``COMMIT`` (a WAL flush)
and their round trips per claim, about as much of the server's CPU as the claim itself; and 50
claimers meant 50 backends contending for two cores and for the head of one queue, which made
the tail (p99 about 250 ms at 600 claims/s). Here at most ``transactions`` claim transactions of
this process run at once. A call that finds them all busy queues; the next transaction to start
serves the calls queued by then (up to ``batch_max``, oldest first), one after the other, then
commits once for all of them (group commit).

Each call keeps its own claim: ``claims.claim_next`` runs for it with its own principal, in the
shared transaction. Its probes see the claims made before it in that transaction (PostgreSQL
runs each statement on a fresh snapshot that includes the transaction's own changes; the ORM
autoflushes on SQLite), so no item is claimed twice, and each call gets the best item that it
may claim (its offers, its tenant, assigned-to-it first, a lapsed lease) as if it had come alone
just after the calls ahead of it. All of them share one ``now``, so a lease one of them just took
cannot look lapsed to another.

A call is answered only after the commit, so a claimer told it holds an item holds it. When a
claim fails in the transaction, nothing of it was committed: every call of the batch then runs
alone, in its own transaction, so one call's failure is its own. When the commit fails, its
outcome may be unknown: every call of the batch gets the error (a claim that did commit lapses
with its lease, as when a single claim's answer is lost).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from models.base import utcnow
from models.principal import Principal, Scope
from models.work_api import WorkItemRead
from orchestrator.storage.db import SessionFactory
from orchestrator.traceability import actions
from orchestrator.work import claim_pipeline, claim_statement, claims
from orchestrator.work.access import require


@dataclass(eq=False)
class _Call:
    """One claim-next call waiting: what it asks, and what it gets."""

    principal: Principal
    ttl_s: float | None
    default_ttl_s: float
    default_stall_after_s: float | None
    done: threading.Event = field(default_factory=threading.Event)
    # Set when it is woken to run a transaction (for itself and the calls queued behind it).
    lead: bool = False
    alone: bool = False
    item: WorkItemRead | None = None
    error: BaseException | None = None


class ClaimBatcher:
    """Serves this process's claim-next calls with at most ``transactions`` claim transactions
    at once, each claiming for up to ``batch_max`` calls (see the module's docstring)."""

    def __init__(self, sessions: SessionFactory, *, transactions: int, batch_max: int):
        if transactions < 1 or batch_max < 1:
            raise ValueError("a claim batcher needs at least one transaction of at least one claim")
        self._sessions = sessions
        self._transactions = transactions
        self._batch_max = batch_max
        self._lock = threading.Lock()
        self._queued: deque[_Call] = deque()
        self._running = 0

    @property
    def running(self) -> int:
        """Claim transactions running now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Calls queued for the next claim transaction."""
        return len(self._queued)

    def claim_next(
        self,
        principal: Principal,
        *,
        ttl_s: float | None,
        default_ttl_s: float,
        default_stall_after_s: float | None = None,
    ) -> WorkItemRead | None:
        """What ``claims.claim_next`` answers, in a transaction this call may share with others."""
        # Refused at once, not in the batch: a refusal is the caller's, and writes nothing.
        require(principal, Scope.work_claim)
        call = _Call(principal, ttl_s, default_ttl_s, default_stall_after_s)
        with self._lock:
            if self._running < self._transactions:
                self._running += 1
                call.lead = True
            else:
                self._queued.append(call)
        if not call.lead:
            call.done.wait()
        if call.lead:
            self._lead(call)
        if call.alone:
            return self._claim([call])[0]
        if call.error is not None:
            raise call.error
        return call.item

    def _lead(self, first: _Call) -> None:
        """Run one transaction for ``first`` and the calls queued behind it, answer them, then
        hand this transaction's turn to the oldest call still queued (or give it up)."""
        with self._lock:
            batch = [first]
            while self._queued and len(batch) < self._batch_max:
                batch.append(self._queued.popleft())
        try:
            self._serve(batch)
        finally:
            with self._lock:
                successor = self._queued.popleft() if self._queued else None
                if successor is None:
                    self._running -= 1
            if successor is not None:
                successor.lead = True
                successor.done.set()
            for call in batch[1:]:
                call.done.set()

    def _serve(self, batch: list[_Call]) -> None:
        try:
            items = self._claim(batch)
        except _ClaimFailed:
            # Rolled back: nothing of the batch happened. Each call claims alone, in its own
            # thread, so that one call's failure is reported to it only.
            for call in batch:
                call.alone = True
            return
        except BaseException as exc:  # the transaction's start or commit (or a lone claim) failed: shared
            for call in batch:
                call.error = exc
            return
        for call, item in zip(batch, items, strict=True):
            call.item = item

    def _claim(self, batch: list[_Call]) -> list[WorkItemRead | None]:
        """Claim for every call of ``batch`` in one transaction; :class:`_ClaimFailed` if a claim
        failed (rolled back), else whatever the commit raised."""
        session = self._sessions()
        try:
            session.begin()
            # Each item is claimed once in the batch and nothing else acts on it: the claims'
            # traceability actions go in one statement before the commit.
            actions.defer_claims(session)
            now = utcnow()
            try:
                items = self._claim_in(session, batch, now)
                actions.write_claims(session)
            except Exception as exc:
                session.rollback()
                if len(batch) == 1:
                    raise
                raise _ClaimFailed from exc
            session.commit()
            return items
        finally:
            session.close()

    def _claim_in(self, session: Session, batch: list[_Call], now: datetime) -> list[WorkItemRead | None]:
        if len(batch) > 1 and claim_statement.supported(session):
            # The batch's claim statements sent together (claim_pipeline). A call alone goes the
            # way below: its failure is then SQLAlchemy's, as every other call's is.
            return claim_pipeline.claim_next_together(
                session,
                [claim_pipeline.Ask(c.principal, c.ttl_s, c.default_ttl_s, c.default_stall_after_s) for c in batch],
                now,
            )
        claim_statement.plan_generically(session)
        return [
            claims.claim_next(
                session,
                call.principal,
                ttl_s=call.ttl_s,
                default_ttl_s=call.default_ttl_s,
                default_stall_after_s=call.default_stall_after_s,
                now=now,
            )
            for call in batch
        ]


class _ClaimFailed(Exception):
    """A claim of a batch failed, and its transaction was rolled back."""
