"""A worker's presence in the agent registry, written to Redis (a worker host has no database).

While the worker runs, a thread rewrites its record (``models.worker_presence.WorkerPresence``)
every ``BEAT_EVERY_S`` under a key that expires after ``PRESENCE_TTL_S``, and keeps its name in
the index the orchestrator reads (``config.keys``). The orchestrator folds what it finds into
agents of tenant ``*`` and marks them live; a worker that dies stops rewriting, its key expires,
and its agent goes stale, then dead. A worker that stops in order deletes its record at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from config import keys
from models.worker_presence import WorkerPresence

log = logging.getLogger(__name__)

BEAT_EVERY_S = 5.0
# Three beats may fail (a Redis restart) before the record lapses.
PRESENCE_TTL_S = 20


class PresenceBeacon:
    """Announces one worker in Redis from a thread of its main process, until :meth:`stop`."""

    def __init__(self, client: Callable[[], redis.Redis], name: str, capabilities: list[str], concurrency: int):
        self._client_factory = client
        self._client: redis.Redis | None = None
        self.record = WorkerPresence(
            name=name,
            capabilities=capabilities,
            concurrency=concurrency,
            started_at=datetime.now(UTC),
            beat_at=datetime.now(UTC),
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workyard-presence", daemon=True)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def start(self) -> PresenceBeacon:
        self._thread.start()
        return self

    def beat(self) -> None:
        """Write the record once, with a fresh TTL, and make sure the index names it."""
        self.record = self.record.model_copy(update={"beat_at": datetime.now(UTC)})
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.worker_presence(self.record.name), self.record.model_dump_json(), ex=PRESENCE_TTL_S)
        pipe.sadd(keys.WORKER_PRESENCE_INDEX, self.record.name)
        pipe.execute()

    def stop(self) -> None:
        """Stop beating and take the record away: the worker is gone now, not once its key expires."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=BEAT_EVERY_S + 5)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(keys.worker_presence(self.record.name))
            pipe.srem(keys.WORKER_PRESENCE_INDEX, self.record.name)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not remove the presence of worker %s: %s", self.record.name, exc)
        finally:
            if self._client is not None:
                self._client.close()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:
                # Not fatal: the record lives PRESENCE_TTL_S, and the next beat tries again.
                log.warning("worker %s could not write its presence: %s", self.record.name, exc)
            except Exception:
                log.exception("worker %s: writing its presence failed; going on", self.record.name)
            if self._stop.wait(BEAT_EVERY_S):
                return
