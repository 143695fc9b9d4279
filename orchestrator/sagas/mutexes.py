"""Mutex scopes as an operator sees them: who holds each lease now, and the scope's fencing token.

Workers keep a scope's lease (``wy:lease:<scope>``, its holder, with a TTL) and the highest fencing
token granted on it (``wy:fence:<scope>``, kept after the lease is released) in the store's Redis
(``workers.store``). This reads them, bounded: a scan of at most ``limit`` scopes.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from config import keys

FENCE_PREFIX = keys.fence("")
LEASE_PREFIX = keys.mutex_lease("")


@dataclass(frozen=True)
class MutexScope:
    """One scope: its holder (None: free), how long the holder's lease has left, its highest token."""

    scope: str
    holder: str | None
    expires_in_ms: int | None
    fencing_token: int | None


def mutex_scopes(client: redis.Redis, *, limit: int = 500) -> tuple[list[MutexScope], bool]:
    """The scopes found (held first, then by name), and whether there were more than ``limit``."""
    found: set[str] = set()
    more = False
    for prefix in (LEASE_PREFIX, FENCE_PREFIX):
        for raw in client.scan_iter(match=f"{prefix}*", count=1000):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if len(found) >= limit and name[len(prefix) :] not in found:
                more = True
                break
            found.add(name[len(prefix) :])
    scopes = sorted(found)
    pipe = client.pipeline(transaction=False)
    for scope in scopes:
        pipe.get(keys.mutex_lease(scope))
        pipe.pttl(keys.mutex_lease(scope))
        pipe.get(keys.fence(scope))
    replies = pipe.execute() if scopes else []
    rows = []
    for n, scope in enumerate(scopes):
        holder, ttl, fence = replies[3 * n : 3 * n + 3]
        rows.append(
            MutexScope(
                scope=scope,
                holder=_text(holder),
                expires_in_ms=int(ttl) if holder is not None and int(ttl) >= 0 else None,
                fencing_token=int(fence) if fence is not None else None,
            )
        )
    rows.sort(key=lambda m: (m.holder is None, m.scope))
    return rows, more


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else value
