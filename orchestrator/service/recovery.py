"""Finds reports that never reached the orchestrator, in the store the workers keep them in.

A worker stores every attempt's final report in Redis (``workers.store``) as it sends it. The
message can still be lost on the way: the orchestrator's connection takes a report off the queue
(BRPOP) before kombu records it as held, so a process killed in between, or while the reply sits
unread in its socket during a batch's transaction, takes the report with it; and a Redis that lost
its data loses the queue. Without this, such an attempt waits for its deadline (the step watchdog's
hour for a step without ``timeout_ms``).

So, every few seconds, the handler attempts that have been running longer than the visibility
timeout (by then a report held by a dead orchestrator is back on the queue, so one still missing
is lost) are looked up in the store, and the reports found there are applied as if they had
arrived. Applying one twice is harmless: the coordinator drops a report for a settled attempt.
Fan-out members are not looked up yet: their attempts still wait for their deadline.

A dispatch can be lost the same way, on the worker's side: a worker killed between its BRPOP and
kombu's record of the message as held takes it along, and no worker ever begins the attempt. Such
an attempt (no stored report, no "seen" marker: no worker began it) is dispatched again once its
capability's queue is empty (while the queue holds messages, it may be among them, merely waiting)
and then again after twice as long each time, while it stays unbegun (a worker's prefetched
message can wait for a free pool process). A duplicate is harmless: the idempotence check finds
the attempt running or ended. This holds for a Redis broker; RabbitMQ gives a dead consumer's
messages back itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import and_, or_, select

from config import keys
from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, Phase
from models.tables import SagaRun, StepAttempt
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.keys import idempotence_key
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import template_of
from orchestrator.service.coordinator import Coordinator
from orchestrator.service.queue_depth import queue_lengths
from orchestrator.storage.db import SessionFactory, lock_sagas, reading
from workers.store import stored_reports

log = logging.getLogger(__name__)

# Attempts looked at per pass, the longest-running first (from where the last pass stopped).
BATCH = 200
# Attempts sent again whose next wait is remembered.
MAX_REMEMBERED = 10_000


class ReportRecovery:
    """Applies the stored reports of attempts whose report message was lost (see the module)."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        coordinator: Coordinator,
        client: redis.Redis,
        *,
        broker: redis.Redis | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.settings = settings
        self.coordinator = coordinator
        self.client = client
        # The broker's Redis, for the length of a capability's queue; None: not a Redis broker.
        self.broker = broker
        self.clock = clock
        # Attempt id -> (when it may be dispatched again, the wait after that).
        self._resent: dict[int, tuple[datetime, timedelta]] = {}
        # Where the next pass goes on: attempts are looked at a page at a time, oldest first, so
        # that long-running ones (a person's work item, an hour-long step) do not hide the rest.
        self._after: tuple[datetime, int] | None = None

    def tick(self) -> int:
        """One pass. Always 0: what it found is applied or sent, and the next pass waits its
        interval (the loop goes on at once only when a tick says there is more)."""
        wanted = self._candidates()
        if not wanted:
            return 0
        reports = stored_reports(self.client, [w.stored for w in wanted])
        found = [raw for raw in reports if raw is not None]
        if found:
            log.warning(
                "applying %d report(s) that never reached the orchestrator, from the workers' store", len(found)
            )
            self.coordinator.handle([json.loads(raw) for raw in found], source="recovered from the workers' store")
        unreported = [w for w, raw in zip(wanted, reports, strict=True) if raw is None]
        if self.broker is not None:
            self._resend_unbegun(unreported)
        if len(self._resent) > MAX_REMEMBERED:
            self._resent.clear()  # attempts long settled; the worst a fresh start costs is one early resend
        return 0  # the next pass waits its interval: what was found is applied, what was lost sent

    def _resend_unbegun(self, unreported: list[_Candidate]) -> int:
        """Dispatch again the attempts no worker began, whose queue is empty (see the module)."""
        assert self.broker is not None
        now = self.clock()
        due = [w for w in unreported if self._resent.get(w.attempt_id, (now, timedelta()))[0] <= now]
        if not due:
            return 0
        seen = self.client.mget([keys.attempt_seen(*w.stored) for w in due])
        unbegun = [w for w, marker in zip(due, seen, strict=True) if marker is None]
        if not unbegun:
            return 0
        lengths = queue_lengths(self.broker, (w.capability for w in unbegun))
        lost = [w for w in unbegun if lengths[w.capability] == 0]
        if not lost:
            return 0
        with self.sessions.begin() as session:
            sagas = lock_sagas(session, (w.saga_id for w in lost))
            engine = SagaEngine(session.uow, SqlSagaStore(session), self.settings, now)
            sent = 0
            for w in lost:
                attempt = session.get(StepAttempt, w.attempt_id)
                saga = sagas.get(w.saga_id)
                if attempt is None or saga is None or attempt.outcome is not Outcome.running:
                    continue
                sent += engine.resend(saga, template_of(session, saga), attempt)
                wait = self._resent.get(w.attempt_id, (now, timedelta()))[1] or timedelta(
                    seconds=self.settings.visibility_timeout_s
                )
                self._resent[w.attempt_id] = (now + wait, wait * 2)
        self.coordinator.dispatcher.publish(session.uow.take_outgoing())
        if sent:
            log.warning("dispatched again %d attempt(s) that no worker began (their dispatch was lost)", sent)
        return sent

    def _candidates(self) -> list[_Candidate]:
        """Handler attempts running past the visibility timeout, with what finds them in the store."""
        before = self.clock() - timedelta(seconds=self.settings.visibility_timeout_s)
        wanted: list[_Candidate] = []
        query = select(StepAttempt).where(StepAttempt.outcome == Outcome.running, StepAttempt.dispatched_at < before)
        if self._after is not None:
            at, attempt_id = self._after
            query = query.where(
                or_(
                    StepAttempt.dispatched_at > at,
                    and_(StepAttempt.dispatched_at == at, StepAttempt.id > attempt_id),
                )
            )
        with reading(self.sessions) as session:
            attempts = list(session.scalars(query.order_by(StepAttempt.dispatched_at, StepAttempt.id).limit(BATCH)))
            # A short page ends the round: the next pass starts again from the oldest.
            self._after = (attempts[-1].dispatched_at, attempts[-1].id) if len(attempts) == BATCH else None
            if not attempts:
                return wanted
            ids = {a.saga_id for a in attempts}
            sagas = {s.id: s for s in session.scalars(select(SagaRun).where(SagaRun.id.in_(ids)))}
            for attempt in attempts:
                saga = sagas.get(attempt.saga_id)
                if saga is None:
                    continue
                spec = template_of(session, saga)
                step = spec.steps[attempt.step_index]
                phase = Phase(attempt.phase)
                ran_a_handler = step.kind == "handler" if phase is Phase.forward else step.compensate is not None
                if not ran_a_handler or step.for_each is not None:
                    continue  # a work item's end comes through the database; fan-out members: see above
                stored = (idempotence_key(saga, spec, step, phase), saga.id, attempt.attempt)
                assert step.capability is not None  # a handler runs on a capability
                wanted.append(_Candidate(attempt.id, saga.id, step.capability, stored))
        return wanted


@dataclass(frozen=True)
class _Candidate:
    """A running handler attempt past the visibility timeout."""

    attempt_id: int
    saga_id: str
    capability: str
    stored: tuple[str, str, int]  # (idempotence key, saga id, attempt): its keys in the store
