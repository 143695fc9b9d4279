"""The HTTP client webhooks are POSTed with: every connection goes to an address that was checked.

httpx resolves a URL's host only when it opens a connection, inside httpcore's network backend.
``GuardedBackend`` is that backend: it resolves the host itself, checks every address
(``orchestrator.work.webhook_targets``) and connects to a checked one, so a name cannot resolve to
a public address for the check and to ``127.0.0.1`` for the connection. The URL is untouched, so
the ``Host`` header, TLS SNI and the certificate's host-name check all stay on the URL's host.
No proxies from the environment (a proxy would make the connection instead of us) and no redirects.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx

from orchestrator.work.webhook_targets import Resolver, allowed_addresses, system_resolver

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend with the target policy applied at every TCP connect."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver):
        self.allow_private = allow_private
        self.resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = allowed_addresses(host, port, allow_private=self.allow_private, resolver=self.resolver)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"DNS lookup failed: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over ``GuardedBackend``, without proxies, HTTP/1.1 only."""

    def __init__(
        self,
        *,
        allow_private: bool,
        verify: ssl.SSLContext | None = None,
        max_connections: int = 8,
        resolver: Resolver = system_resolver,
    ):
        ssl_context = verify or httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx builds its pool without a way to pass a network backend: replace it (the tests
        # prove, on a real server, that connections go through the guard).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
        )


def guarded_client(
    *,
    allow_private: bool,
    timeout_s: float,
    verify: ssl.SSLContext | None = None,
    max_connections: int = 8,
    resolver: Resolver = system_resolver,
) -> httpx.Client:
    """A client for webhook POSTs: checked targets, no redirects, no proxies."""
    transport = GuardedTransport(
        allow_private=allow_private, verify=verify, max_connections=max_connections, resolver=resolver
    )
    return httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
