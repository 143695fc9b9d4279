"""Bearer tokens -> the calling principal. No token or an unknown one is a 401."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from config.logging import set_log_context
from models.principal import ALL_TENANTS, Principal, PrincipalType, Scope
from orchestrator.api.deps import get_wiring
from orchestrator.api.errors import error_response, unavailable_response
from orchestrator.errors import Unauthorized
from orchestrator.service.wiring import Wiring
from orchestrator.storage.db import is_transient
from orchestrator.work.access import require
from orchestrator.work.tokens import resolve_token

# Where Authenticate leaves the principal, in the request's state.
PRINCIPAL_KEY = "principal"
# Where the MCP server answers on the API (streamable HTTP; orchestrator/mcp/http.py).
MCP_PATH = "/mcp"
# Where Prometheus scrapes the API (orchestrator/api/metrics.py).
METRICS_PATH = "/metrics"
# A revoked token stops working within this many seconds.
CACHE_TTL_S = 5.0

bearer = HTTPBearer(auto_error=False, description="A token from `workyard token create`.")
_cache: dict[tuple[int, str], tuple[float, Principal]] = {}
_cache_lock = threading.Lock()

ADMIN = Principal(type=PrincipalType.user, id="admin", tenant=ALL_TENANTS, scopes=frozenset({Scope.admin.value}))


def authenticate(wiring: Wiring, authorization: str | None) -> Principal:
    """The principal an ``Authorization`` header names; :class:`Unauthorized` if none."""
    principal = known_principal(wiring, authorization)
    if principal is not None:
        return principal
    secret = _secret(authorization)
    now = time.monotonic()
    with wiring.sessions() as session:
        principal = resolve_token(session, secret)
    if principal is None:
        raise Unauthorized("the bearer token is unknown or revoked")
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[(id(wiring), secret)] = (now + CACHE_TTL_S, principal)
    return principal


def known_principal(wiring: Wiring, authorization: str | None) -> Principal | None:
    """The principal an ``Authorization`` header names if that is known without the database
    (the admin token, or a token looked up less than ``CACHE_TTL_S`` ago); None if it must be
    looked up. :class:`Unauthorized` for a header that names no token."""
    secret = _secret(authorization)
    admin = wiring.settings.admin_token
    if admin and hmac.compare_digest(secret.encode(), admin.encode()):
        return ADMIN
    with _cache_lock:
        cached = _cache.get((id(wiring), secret))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def _secret(authorization: str | None) -> str:
    scheme, _, secret = (authorization or "").strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("send a bearer token: Authorization: Bearer <token> (see `workyard token create`)")
    return secret


def guarded(path: str, *, metrics_public: bool = False) -> bool:
    """Whether a request to ``path`` needs a token: the API, the MCP endpoint (``/mcp``) and
    ``/metrics`` (unless ``WORKYARD_METRICS_PUBLIC``), not ``/healthz`` nor the OpenAPI pages."""
    if path == METRICS_PATH:
        return not metrics_public
    return path.startswith("/api/") or path == MCP_PATH or path.startswith(MCP_PATH + "/")


class Authenticate:
    """Every ``/api/``, ``/mcp`` and (unless public) ``/metrics`` request names its principal
    before anything else is looked at: a request without a valid token is a 401 whatever its body
    (malformed or oversized included)."""

    def __init__(self, app: Any, wiring: Wiring):
        self.app = app
        self.wiring = wiring

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not guarded(scope["path"], metrics_public=self.wiring.settings.metrics_public):
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"authorization")
        header = raw.decode("latin-1") if raw is not None else None
        try:
            # Most requests come with a token seen in the last seconds: answered here, at no
            # more cost than a dict lookup. A lookup in the database goes off the event loop
            # (a thread hop costs more than the rest of the check).
            principal = known_principal(self.wiring, header)
            if principal is None:
                principal = await anyio.to_thread.run_sync(authenticate, self.wiring, header)
        except Unauthorized as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.details)
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        except Exception as exc:
            # Outside the app's exception handlers here: answer a database outage the same way.
            if not is_transient(exc):
                raise
            await unavailable_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        # The request's log lines name the caller's tenant (orchestrator.api.context resets it).
        set_log_context(tenant=principal.tenant)
        await self.app(scope, receive, send)


# The dependencies here are coroutines, as are get_wiring and strict_query: FastAPI runs a plain
# function dependency in the thread pool, and each such hop cost more than the work it did (five
# of them on every request).


async def get_principal(
    request: Request,
    wiring: Annotated[Wiring, Depends(get_wiring)],
    # Declared for the OpenAPI document (the "Authorize" button); Authenticate did the work.
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    principal = getattr(request.state, PRINCIPAL_KEY, None)
    if isinstance(principal, Principal):
        return principal
    header = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
    known = known_principal(wiring, header)
    if known is not None:
        return known
    return await anyio.to_thread.run_sync(authenticate, wiring, header)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def needs(scope: Scope) -> Any:
    """A route dependency: the caller's token must carry ``scope``."""

    async def check(principal: PrincipalDep) -> Principal:
        require(principal, scope)
        return principal

    return Depends(check)
