"""``/mcp`` on the HTTP API: the MCP tools over streamable HTTP, served in this process.

The app's ``Authenticate`` middleware has already turned the request's bearer token into a
principal (or answered 401) by the time a request gets here; each MCP message is served by an
:class:`~.inprocess.InProcessBackend` for that principal. The transport is stateless and answers
with plain JSON: any of several API processes can take any request, and no session outlives one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings

from models.principal import Principal
from orchestrator.api.auth import PRINCIPAL_KEY
from orchestrator.api.errors import error_response
from orchestrator.errors import Unauthorized
from orchestrator.mcp.backend import Backend
from orchestrator.mcp.inprocess import InProcessBackend
from orchestrator.mcp.tools import build_server
from orchestrator.service.wiring import Wiring

# The SDK's Host/Origin checks guard servers that trust whoever can reach them; every call here
# needs a bearer token, which a page rebound to this address cannot send, and the API is reached
# by whatever host name its deployment gives it.
NO_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


class McpEndpoint:
    """The ASGI app behind ``/mcp``; :meth:`running` must wrap the app's lifespan."""

    def __init__(self, wiring: Wiring):
        self.wiring = wiring
        self.server = build_server(self._backend_for)
        self._running = False

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the SDK's session manager while the app runs. A new one on every start: one
        manager runs once, and an app (a test's) may be started more than once."""
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=NO_HOST_CHECK,
            max_request_body_size=self.wiring.settings.max_request_bytes,
        )
        async with self.server.session_manager.run():
            self._running = True
            try:
                yield
            finally:
                self._running = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self._running:
            response = error_response(503, "unavailable", "the MCP endpoint is not running yet; retry shortly")
            await response(scope, receive, send)
            return
        await self.server.session_manager.handle_request(scope, receive, send)

    def _backend_for(self, context: ServerRequestContext[Any, Any]) -> Backend:
        request = context.request
        state = getattr(request, "scope", {}).get("state") or {}
        principal = state.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            # Authenticate answers 401 first; this only holds if the endpoint is mounted without it.
            raise Unauthorized("send a bearer token: Authorization: Bearer <token> (see `workyard token create`)")
        return InProcessBackend(self.wiring, principal)
