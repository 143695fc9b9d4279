"""kombu's Redis transport, with one synchronous Redis client per channel.

kombu's Redis channel builds a new ``redis.Redis`` client for every publish, every
acknowledgement and every event it sends (``Channel.conn_or_acquire``), and building one
(its table of response callbacks) costs about 0.15 ms of CPU: several times per saga step, in the
worker, the orchestrator and whoever submits. The client only wraps the channel's connection
pool, and a ``redis.Redis`` is safe to share between threads, so this channel keeps one. It is
rebuilt if the channel's pool is replaced (after a connection error).

:func:`install` points the ``redis`` transport alias (``redis://``, ``redis+socket://``) here;
every other transport is left as it is.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The BRPOP/pub-sub clients have their own pool and lifecycle in kombu: untouched.
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client(asynchronous=False)  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
