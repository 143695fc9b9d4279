"""Open-loop pacing for the saga benchmark, and the watchers that see each saga finish.

A paced run submits saga ``i`` at its due time ``t0 + i / rate`` whether or not earlier ones have
finished (open loop: the system under test cannot slow the submitter down and so hide a
backlog), and measures latency from the due time, so a submitter that falls behind shows up in
the figures instead of shifting them.

A watcher sees sagas finish as a client would, from another thread of the submitting process:

- the raw chain's last task pushes ``"<n> <time>"`` onto a Redis list, popped as it arrives;
- workyard on PostgreSQL: a trigger the benchmark adds to its scratch schema NOTIFYs when a saga
  run gets its ``finished_at``; PostgreSQL delivers that at commit, so "seen" is the commit;
- workyard on SQLite, which has no notifications across processes: a plain ``sqlite3``
  connection polls the saga runs still pending every ``SQLITE_POLL_S``. It must not be
  workyard's engine, which opens every transaction with ``BEGIN IMMEDIATE`` and would take the
  write lock from the coordinator at every poll.

Each watcher measures its own thread's CPU, so the benchmark can leave it out of the submitter's:
it is the benchmark's cost, not the system's.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

# Every 2 ms: a finish is seen about 1 ms late on average, at about 500 cheap reads a second.
SQLITE_POLL_S = 0.002
# The most ids one poll asks about: SQLite binds each as a parameter.
SQLITE_POLL_CHUNK = 500


def pace(n: int, rate: float, submit: Callable[[int], None], *, lead_s: float = 0.1) -> tuple[list[float], list[float]]:
    """Call ``submit(i)`` for i in 0..n-1 at its due time ``t0 + i / rate`` (``t0`` is ``lead_s``
    from now); one that comes due while an earlier call still runs goes at once, late. Returns the
    due times and the times each call began (epoch seconds)."""
    t0 = time.time() + lead_s
    due: list[float] = []
    began: list[float] = []
    for i in range(n):
        at = t0 + i / rate
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        due.append(at)
        began.append(time.time())
        submit(i)
    return due, began


class Watcher:
    """Sees sagas finish, in a thread of its own: ``seen`` maps a saga's key to when it was seen
    (epoch seconds); ``cpu_s`` is the thread's CPU once stopped."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=type(self).__name__, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, key: str) -> None:
        """A saga was submitted under ``key``: a watcher that polls asks about it from now on."""

    def wait(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` sagas were seen, or ``timeout_s`` passed; whether they were."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        started = time.thread_time()
        try:
            self._watch()
        finally:
            self.cpu_s = time.thread_time() - started

    def _watch(self) -> None:
        raise NotImplementedError


class RedisListWatcher(Watcher):
    """Pops the raw chain's ``"<n> <finished>"`` entries off a Redis list; ``finished`` maps n to
    the time the last task recorded, ``seen`` to when the entry was popped."""

    def __init__(self, redis_url: str, key: str):
        super().__init__()
        self.client = redis.Redis.from_url(redis_url)
        self.key = key
        self.finished: dict[str, float] = {}

    def _watch(self) -> None:
        while not self._stop.is_set():
            popped = self.client.blpop([self.key], timeout=0.5)
            if popped is None:
                continue
            now = time.time()
            entry = popped[1]
            n, finished = (entry.decode() if isinstance(entry, bytes) else entry).split()
            self.finished[n] = float(finished)
            self.seen[n] = now

    def stop(self) -> None:
        super().stop()
        self.client.close()


class SqlitePollWatcher(Watcher):
    """Polls a SQLite database for the saga runs it expects that have a ``finished_at``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._expected: queue.SimpleQueue[str] = queue.SimpleQueue()

    def expect(self, key: str) -> None:
        self._expected.put(key)

    def _watch(self) -> None:
        # Autocommit: each SELECT is a read transaction of its own and sees the latest commit
        # (WAL: readers neither wait for the coordinator's writes nor hold them up).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        conn.execute("PRAGMA query_only=1")
        pending: set[str] = set()
        try:
            while not self._stop.is_set():
                while not self._expected.empty():
                    pending.add(self._expected.get_nowait())
                if pending:
                    ids = list(pending)
                    for i in range(0, len(ids), SQLITE_POLL_CHUNK):
                        chunk = ids[i : i + SQLITE_POLL_CHUNK]
                        marks = ",".join("?" * len(chunk))
                        rows = conn.execute(
                            f"SELECT id FROM saga_runs WHERE finished_at IS NOT NULL AND id IN ({marks})", chunk
                        ).fetchall()
                        now = time.time()
                        for (saga_id,) in rows:
                            self.seen[saga_id] = now
                            pending.discard(saga_id)
                time.sleep(SQLITE_POLL_S)
        finally:
            conn.close()


def postgres_conninfo(url: str, application_name: str) -> str:
    """A libpq URI for psycopg from a SQLAlchemy URL, under another application name (so that the
    benchmark's own backends are not counted with the system's)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.update_query_dict({"application_name": application_name}).render_as_string(hide_password=False)


def install_finish_trigger(url: str, channel: str) -> None:
    """Have PostgreSQL NOTIFY ``channel`` with a saga run's id when it gets its ``finished_at``
    (in the scratch schema the URL's search_path names; dropped with it). The trigger's cost
    falls inside the coordinator's transaction: one row, one pg_notify per saga."""
    with psycopg.connect(postgres_conninfo(url, "workyard-bench-admin"), autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION bench_saga_finished() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN PERFORM pg_notify('{channel}', NEW.id); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER bench_saga_finished AFTER UPDATE OF finished_at ON saga_runs FOR EACH ROW "
            "WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL) EXECUTE FUNCTION bench_saga_finished()"
        )


def drop_finish_trigger(url: str) -> None:
    """Take the trigger away again (the burst that follows measures workyard without it)."""
    with psycopg.connect(postgres_conninfo(url, "workyard-bench-admin"), autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS bench_saga_finished ON saga_runs")


class PostgresListenWatcher(Watcher):
    """LISTENs for the finish trigger's notifications (see :func:`install_finish_trigger`)."""

    def __init__(self, url: str, channel: str):
        super().__init__()
        self.conn = psycopg.connect(postgres_conninfo(url, "workyard-bench-watcher"), autocommit=True)
        # LISTEN before the first submit, so that no notification can come before it.
        self.conn.execute(f'LISTEN "{channel}"')

    def _watch(self) -> None:
        while not self._stop.is_set():
            for note in self.conn.notifies(timeout=0.5):
                self.seen[note.payload] = time.time()

    def stop(self) -> None:
        super().stop()
        self.conn.close()


class TaskEventLog:
    """Celery task events (``task-sent`` from the publisher, ``task-received``, ``task-started``
    and ``task-succeeded`` from the worker), the first of each type per task id with its
    timestamp, captured in a thread of its own."""

    def __init__(self, app: Any):
        self.app = app
        self.times: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._main, name="task-events", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while self._receiver is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _on_event(self, event: dict[str, Any]) -> None:
        task = event.get("uuid")
        if task:
            self.times[task].setdefault(event["type"], float(event["timestamp"]))

    def _main(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            # wakeup=False: no heartbeat broadcast to the workers; their events come anyway.
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
