"""Notices a Redis that lost its data, and dispatches again what was in flight.

A Redis that lost its data (restarted without persistence, flushed, replaced by an empty one)
took with it: the queues (dispatches waiting for a worker, reports waiting for the orchestrator,
messages held unacknowledged), the workers' stored results and reports, their seen markers and run
claims, and the mutex leases. Fencing tokens, attempts, timers and the outbox are in the database.
Without this, every attempt in flight waits for its deadline (the step watchdog's hour for a step
without ``timeout_ms``).

How a loss is noticed: a marker key (``keys.GENERATION``) holds a random generation id in the
store's Redis, and in the broker's where that is another Redis (or another database of it); the
database remembers the id (``redis_generations``). Every pass reads the markers (one GET each); one
missing, or holding another id, means that Redis lost its data.

What follows: every running attempt of a handler step (forward or compensating; of a fan-out, its
members still running) is dispatched again as it was: the same attempt, idempotence key, fencing
token and deadline, through the outbox. Its seen marker was lost too, so the step runs again from
the start: after a loss a step may run twice (before the loss and after), as with any
at-least-once delivery; its idempotence key is what makes its effects once. A dispatch that did
survive (published after the loss, before it was noticed) then arrives twice, and the second
delivery finds the first running or ended: it waits, replays or drops. A work item step whose item
ended has the item's report sent again (the one published may have been lost).

Two orchestrators: the generation changes in the database by compare-and-set (UPDATE ... WHERE
generation = the one read), and the new marker is written before that transaction commits. The
orchestrator whose UPDATE took re-dispatches; another one's UPDATE (which, on PostgreSQL, waits for
the row lock) matches nothing, so it does nothing. A crash between writing the marker and the
commit leaves the marker ahead of the database: the next pass re-dispatches once more, harmlessly.

Not covered: messages lost while the markers survive, as a failover to a replica that had not yet
received the last writes (asynchronous replication) or someone deleting queue keys by hand. A
report lost that way is still found in the workers' store by ``ReportRecovery`` (if the store kept
it); a dispatch lost that way waits for its attempt's deadline. A broker that is not Redis
(RabbitMQ) carries no marker: its queues are durable; the store's Redis still does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from config import keys
from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, Phase
from models.tables import RedisGeneration, StepAttempt
from models.work_tables import WorkItem
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.service.dispatcher import Dispatcher
from orchestrator.storage.db import SessionFactory, lock_sagas
from orchestrator.storage.unit_of_work import WorkSession
from orchestrator.work.links import report_outcome

log = logging.getLogger(__name__)

# The one row of redis_generations: one generation covers every Redis that carries a marker.
ROW = "redis"
# Who the report of a work item sent again comes from, on the saga's timeline.
RESENT_BY = "workyard (sent again after a Redis data loss)"


class RedisLoss:
    """Notices that a Redis lost its data and dispatches again what was in flight (see the module)."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        dispatcher: Dispatcher,
        clients: Sequence[redis.Redis],
        *,
        clock: Callable[[], datetime] = utcnow,
        new_generation: Callable[[], str] = lambda: uuid.uuid4().hex,
    ):
        self.sessions = sessions
        self.settings = settings
        self.dispatcher = dispatcher
        self.clients = list(clients)
        self.clock = clock
        self.new_generation = new_generation
        # The generation this process last saw agree with every marker: no database read while
        # they still hold it.
        self._known: str | None = None

    def tick(self) -> int:
        """One pass; how many dispatches (and work item reports) it sent again."""
        markers = [_text(client.get(keys.GENERATION)) for client in self.clients]
        if self._known is not None and all(m == self._known for m in markers):
            return 0
        with self.sessions() as session:
            row = session.get(RedisGeneration, ROW)
            known = row.generation if row is not None else None
        if known is not None and all(m == known for m in markers):
            self._known = known  # another orchestrator set it, or this process just started
            return 0
        return self._renew(known)

    def _renew(self, known: str | None) -> int:
        generation = self.new_generation()
        now = self.clock()
        resent = 0
        try:
            with self.sessions.begin() as session:
                if known is None:
                    # The first pass ever: nothing to tell a loss from yet.
                    session.add(RedisGeneration(name=ROW, generation=generation, changed_at=now))
                    session.flush()  # another orchestrator's row, if it won, fails this here
                else:
                    took = session.execute(
                        update(RedisGeneration)
                        .where(RedisGeneration.name == ROW, RedisGeneration.generation == known)
                        .values(generation=generation, changed_at=now)
                    )
                    if not getattr(took, "rowcount", 0):
                        return 0  # another orchestrator noticed it first and re-dispatches
                    log.warning(
                        "Redis lost its data (its generation marker is gone): dispatching again what was in flight"
                    )
                    resent = self._resend_running(session, now)
                # Before the commit: an orchestrator that reads the markers from now on and the
                # database before we commit finds them apart, and its compare-and-set then fails.
                for client in self.clients:
                    client.set(keys.GENERATION, generation)
                self.dispatcher.delete_published(session)
        except IntegrityError:
            return 0  # the first pass of two orchestrators at once: the other one's row stands
        self.dispatcher.publish(session.uow.take_outgoing())
        self._known = generation
        if known is not None:
            log.warning("sent %d dispatch(es) and work item report(s) again after the Redis data loss", resent)
        return resent

    def _resend_running(self, session: WorkSession, now: datetime) -> int:
        """Write to the outbox, again, the dispatches of every running attempt and the reports
        of work items that ended while their attempt still runs."""
        attempts = list(session.scalars(select(StepAttempt).where(StepAttempt.outcome == Outcome.running)))
        if not attempts:
            return 0
        sagas = lock_sagas(session, (a.saga_id for a in attempts))
        engine = SagaEngine(session.uow, SqlSagaStore(session), self.settings, now)
        resent = 0
        for attempt in attempts:
            saga = sagas.get(attempt.saga_id)
            if saga is not None:
                resent += engine.resend(saga, template_of(session, saga), attempt)
        waiting = {(a.saga_id, a.step_index, Phase(a.phase).value, a.attempt) for a in attempts}
        ended = session.scalars(select(WorkItem).where(WorkItem.saga_id.in_(list(sagas)), WorkItem.is_open.is_(False)))
        for item in ended:
            if (item.saga_id, item.saga_step_index, item.saga_phase, item.saga_attempt) in waiting:
                report_outcome(session, item, RESENT_BY)
                resent += 1
        return resent


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)
