"""Bearer tokens -> the calling principal. No token or an unknown one is a 401."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from models.principal import ALL_TENANTS, Principal, PrincipalType, Scope
from orchestrator.api.deps import get_wiring
from orchestrator.errors import Unauthorized
from orchestrator.wiring import Wiring
from orchestrator.work.access import require
from orchestrator.work.tokens import resolve_token

# A revoked token stops working within this many seconds.
CACHE_TTL_S = 5.0

_bearer = HTTPBearer(auto_error=False, description="A token from `workyard token create`.")
_cache: dict[tuple[int, str], tuple[float, Principal]] = {}
_cache_lock = threading.Lock()

ADMIN = Principal(type=PrincipalType.user, id="admin", tenant=ALL_TENANTS, scopes=frozenset({Scope.admin.value}))


def get_principal(
    wiring: Annotated[Wiring, Depends(get_wiring)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("send a bearer token: Authorization: Bearer <token> (see `workyard token create`)")
    secret = credentials.credentials
    admin = wiring.settings.admin_token
    if admin and hmac.compare_digest(secret.encode(), admin.encode()):
        return ADMIN
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get((id(wiring), secret))
    if cached is not None and cached[0] > now:
        return cached[1]
    with wiring.sessions() as session:
        principal = resolve_token(session, secret)
    if principal is None:
        raise Unauthorized("the bearer token is unknown or revoked")
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[(id(wiring), secret)] = (now + CACHE_TTL_S, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def needs(scope: Scope) -> Any:
    """A route dependency: the caller's token must carry ``scope``."""

    def check(principal: PrincipalDep) -> Principal:
        require(principal, scope)
        return principal

    return Depends(check)
