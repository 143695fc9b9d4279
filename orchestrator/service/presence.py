"""The orchestrator's side of workers' presence: read the records Celery workers keep in Redis
(``workers.presence``) and fold them into the agent registry (``orchestrator.agents.workers``).

A pass costs one SMEMBERS and one MGET, and one or two statements; several orchestrator
processes may run it at once (a fold changes nothing that is fresh already).
"""

from __future__ import annotations

import logging
import time

import redis
from pydantic import ValidationError

from config import keys
from config.settings import get_settings
from models.worker_presence import WorkerPresence
from orchestrator.agents.workers import fold_workers, forget_gone_workers
from orchestrator.storage.db import SessionFactory

log = logging.getLogger(__name__)

FORGET_EVERY_S = 300.0  # how often a pass also forgets long-gone workers' agents


class WorkerPresenceFold:
    """Folds the Celery workers present in Redis into agents of tenant ``*``, a pass per tick."""

    def __init__(self, sessions: SessionFactory, client: redis.Redis, *, forget_after_s: float | None = None):
        self.sessions = sessions
        self.client = client
        self.forget_after_s = (
            forget_after_s if forget_after_s is not None else get_settings().worker_agent_forget_after_s
        )
        self._next_forget = 0.0

    def present(self) -> list[WorkerPresence]:
        """The records of the workers present now; names whose record expired leave the index."""
        names = sorted(_text(n) for n in self.client.smembers(keys.WORKER_PRESENCE_INDEX))
        if not names:
            return []
        records = self.client.mget([keys.worker_presence(n) for n in names])
        gone = [n for n, raw in zip(names, records, strict=True) if raw is None]
        if gone:
            # A worker that beats again puts its name back (every beat adds it).
            self.client.srem(keys.WORKER_PRESENCE_INDEX, *gone)
        found: list[WorkerPresence] = []
        for name, raw in zip(names, records, strict=True):
            if raw is None:
                continue
            try:
                found.append(WorkerPresence.model_validate_json(raw))
            except ValidationError as exc:
                log.warning("ignoring the malformed presence record of worker %s: %s", name, exc)
        return found

    def tick(self) -> int:
        """One pass; 0: nothing waits for the next one (the loop sleeps between passes)."""
        present = self.present()
        if present:
            with self.sessions.begin() as session:
                fold_workers(session, present)
        if time.monotonic() >= self._next_forget:
            # Rarely: a worker is forgotten a day after it went, not a second.
            self._next_forget = time.monotonic() + FORGET_EVERY_S
            with self.sessions.begin() as session:
                forget_gone_workers(session, after_s=self.forget_after_s)
        return 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
