"""Keeps a running step's claim and mutex lease alive, and notices when one is lost."""

from __future__ import annotations

import logging
import threading

import redis

from workers.store import StepStore

log = logging.getLogger(__name__)


class Renewal:
    """A background thread renewing ``(key, ttl_ms)`` pairs owned by ``owner``.

    ``lost`` is set when a renewal finds the key gone or taken by someone else; the step must
    then not be reported as a success.
    """

    def __init__(self, store: StepStore, owner: str, leases: list[tuple[str, int]]):
        self._store = store
        self._owner = owner
        self._leases = leases
        self._stop = threading.Event()
        self.lost: str | None = None
        interval_ms = min(ttl for _, ttl in leases) / 3 if leases else 1000
        self._interval_s = interval_ms / 1000
        self._thread = threading.Thread(target=self._run, name="workyard-renewal", daemon=True)

    def __enter__(self) -> Renewal:
        if self._leases:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for key, ttl_ms in self._leases:
                try:
                    if not self._store.renew(key, self._owner, ttl_ms):
                        self.lost = key
                except redis.RedisError as exc:
                    # Not lost yet: the key may still be ours; the next renewal tries again.
                    log.warning("renewing %s failed: %s", key, exc)
            if self.lost:
                log.warning("lease %s was lost while the step ran", self.lost)
                return
