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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from sqlalchemy import select

from config.settings import Settings
from models.base import utcnow
from models.enums import Outcome, Phase
from models.tables import SagaRun, StepAttempt
from orchestrator.sagas.keys import idempotence_key
from orchestrator.sagas.templates import template_of
from orchestrator.service.coordinator import Coordinator
from orchestrator.storage.db import SessionFactory
from workers.store import stored_reports

log = logging.getLogger(__name__)

# Attempts looked up per pass, the longest-running first.
BATCH = 200


class ReportRecovery:
    """Applies the stored reports of attempts whose report message was lost (see the module)."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        coordinator: Coordinator,
        client: redis.Redis,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.settings = settings
        self.coordinator = coordinator
        self.client = client
        self.clock = clock

    def tick(self) -> int:
        """One pass; how many lost reports it found and handed to the coordinator."""
        wanted = self._candidates()
        if not wanted:
            return 0
        found = [raw for raw in stored_reports(self.client, wanted) if raw is not None]
        if not found:
            return 0
        log.warning("applying %d report(s) that never reached the orchestrator, from the workers' store", len(found))
        self.coordinator.handle([json.loads(raw) for raw in found], source="recovered from the workers' store")
        return 0  # the next pass waits its interval: what was found is applied

    def _candidates(self) -> list[tuple[str, str, int]]:
        """(idempotence key, saga id, attempt) of handler attempts running past the visibility timeout."""
        before = self.clock() - timedelta(seconds=self.settings.visibility_timeout_s)
        wanted: list[tuple[str, str, int]] = []
        with self.sessions() as session:
            attempts = list(
                session.scalars(
                    select(StepAttempt)
                    .where(StepAttempt.outcome == Outcome.running, StepAttempt.dispatched_at < before)
                    .order_by(StepAttempt.dispatched_at)
                    .limit(BATCH)
                )
            )
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
                wanted.append((idempotence_key(saga, spec, step, phase), saga.id, attempt.attempt))
        return wanted
