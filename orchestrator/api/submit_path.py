"""``POST /api/v1/sagas`` as upstream systems send it, answered before FastAPI's router.

Every upstream job arrives here, one request each. For a plain request, FastAPI's own work per
request (matching the path against every route of every router, solving the endpoint's tree of
dependencies, reading the body through its request object) cost about as much API CPU as the
whole event-loop side of the submit besides. A plain request is answered here instead, by the
same code, with the same answer:

- ``POST`` to exactly ``/api/v1/sagas``, no query string, no ``Idempotency-Key`` header;
- a caller whose token carries ``sagas:write`` (``Authenticate`` named it before this runs);
- a body sent as ``application/json`` that is a valid ``SagaCreate`` (the input gate has checked it before this runs).

Anything else (a refusal of any kind, the header, a query) goes on to the FastAPI route
untouched, which answers it as it always has: each 4xx of the request itself comes from one
place. What the submit itself refuses (an unknown template, an input the schema refuses, a
key used with another input, the database away) is answered with the error the route's
exception handlers give (``orchestrator.api.errors.api_error_response``).
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from models.api import SagaCreate
from models.principal import Principal, Scope
from orchestrator.api.auth import PRINCIPAL_KEY
from orchestrator.api.errors import api_error_response, json_response
from orchestrator.api.gate import Message, replay
from orchestrator.errors import OrchestratorError
from orchestrator.service.wiring import Wiring

PATH = "/api/v1/sagas"
_IDEMPOTENCY_HEADER = b"idempotency-key"


class SubmitPath:
    """ASGI middleware, innermost (after the token, the size limit and the input gate): answers a
    plain ``POST /api/v1/sagas`` itself, passes everything else on (see the module)."""

    def __init__(self, app: Any, wiring: Wiring, route: APIRoute):
        self.app = app
        self.wiring = wiring
        # The route it stands in for: the request's span is named after it (RequestContext).
        self.route = route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        principal = _plain_submit(scope)
        if principal is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        more = True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                await self.app(scope, replay(messages), send)
                return
            more = bool(message.get("more_body"))
        body = _valid_body(b"".join(m.get("body", b"") for m in messages))
        if body is None:
            # Left to the route, which says what is wrong as it always has.
            await self.app(scope, replay(messages), send)
            return
        # Imported here: orchestrator.api.sagas builds the routers, which import the app's parts.
        from orchestrator.api.sagas import submit

        scope["route"] = self.route
        try:
            saga, created = await anyio.to_thread.run_sync(submit, self.wiring, principal, body)
            response = json_response(saga, 202 if created else 200)
        except (OrchestratorError, SQLAlchemyError) as exc:
            # What the app's handlers answer for the route. Anything else goes on up, as from
            # the route: through the request's span (marked an error) to the server error page.
            response = api_error_response(exc)
        await response(scope, replay([]), send)


def _plain_submit(scope: dict[str, Any]) -> Principal | None:
    """The caller, if the request is a submit this path answers (short of its body)."""
    if (
        scope["type"] != "http"
        or scope["method"] != "POST"
        or scope["path"] != PATH
        or scope.get("query_string")
        or scope.get("root_path")
    ):
        return None
    json_body = False
    for name, value in scope.get("headers") or ():
        if name == _IDEMPOTENCY_HEADER:
            return None
        if name == b"content-type":
            json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
    if not json_body:
        return None
    principal = (scope.get("state") or {}).get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal) or not principal.has(Scope.sagas_write.value):
        return None
    return principal


def _valid_body(raw: bytes) -> SagaCreate | None:
    """The body as the route would read it (``json.loads``, then the model), or None if the route
    would refuse it."""
    if not raw:
        return None
    try:
        return SagaCreate.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def submit_route(routes: list[Any]) -> APIRoute:
    """The route ``POST /api/v1/sagas`` among an app's routes."""
    for route in routes:
        if isinstance(route, APIRoute) and route.path == PATH and "POST" in (route.methods or ()):
            return route
    raise LookupError(f"no route POST {PATH}")
