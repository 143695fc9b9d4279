"""Keeps running steps' claims and mutex leases alive, and notices when one is lost.

One renewal thread per process serves every step running in it: starting a thread per step
costs more than the step itself for short handlers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import redis

from workers.store import Guard, Renew, StepStore

log = logging.getLogger(__name__)

TICK_S = 0.1


@dataclass(eq=False)
class Renewal:
    """Renew ``(key, ttl_ms)`` pairs owned by ``owner`` while inside the ``with`` block.

    ``lost`` names the first key found taken by someone else; the step must then not be reported
    as a success. A key that lapsed (the process stalled past its TTL) and that nobody took is
    taken back: whether the finished step still counts is decided when its outcome is stored.
    """

    store: StepStore
    owner: str
    leases: list[tuple[str, int]]
    lost: str | None = None
    # Per key: what shows someone else took the step, should the key lapse (see StepStore.renew).
    guards: dict[str, Guard] = field(default_factory=dict)
    _next_s: float = field(default=0.0, repr=False)

    @property
    def interval_s(self) -> float:
        return min(ttl for _, ttl in self.leases) / 3000

    def __enter__(self) -> Renewal:
        if self.leases:
            self._next_s = time.monotonic() + self.interval_s
            _renewer().add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.leases:
            _renewer().discard(self)

    def add(self, key: str, ttl_ms: int, guard: Guard | None = None) -> None:
        """Renew one more key from now on (a mutex lease taken after the claim)."""
        if guard is not None:
            self.guards = {**self.guards, key: guard}
        self.leases = [*self.leases, (key, ttl_ms)]

    def renew(self) -> None:
        for key, ttl_ms in list(self.leases):
            try:
                answer = self.store.renew(key, self.owner, ttl_ms, self.guards.get(key))
                if answer is Renew.taken:
                    self.lost = self.lost or key
                    log.warning("lease %s was taken by someone else while the step ran", key)
                elif answer is Renew.retaken:
                    # Renewals stopped for longer than the TTL (a pause of the whole process);
                    # nobody took it meanwhile. Finishing decides whether the work still counts.
                    log.warning("lease %s had lapsed while the step ran; taken back", key)
            except redis.RedisError as exc:
                # Not lost yet: the key may still be ours; the next renewal tries again.
                log.warning("renewing %s failed: %s", key, exc)
        self._next_s = time.monotonic() + self.interval_s


class _Renewer:
    def __init__(self) -> None:
        self._active: set[Renewal] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="workyard-renewal", daemon=True)
        self._thread.start()

    def add(self, renewal: Renewal) -> None:
        with self._lock:
            self._active.add(renewal)

    def discard(self, renewal: Renewal) -> None:
        with self._lock:
            self._active.discard(renewal)

    def _run(self) -> None:
        while True:
            try:
                self._tick()
            except Exception:
                # This thread keeps every running step's claim alive: it must outlive any one
                # failure (a renewal that raised, a sleep interrupted oddly), or claims lapse.
                log.exception("renewing claims and leases failed; going on")

    def _tick(self) -> None:
        time.sleep(TICK_S)
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._active if r._next_s <= now and r.lost is None]
        for renewal in due:
            renewal.renew()


_RENEWER: tuple[int, _Renewer] | None = None
_RENEWER_LOCK = threading.Lock()


def _renewer() -> _Renewer:
    """The process's renewer; a forked pool process gets its own (threads do not survive fork)."""
    global _RENEWER
    with _RENEWER_LOCK:
        if _RENEWER is None or _RENEWER[0] != os.getpid():
            _RENEWER = (os.getpid(), _Renewer())
        return _RENEWER[1]
