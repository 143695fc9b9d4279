"""The FastAPI application (OpenAPI at ``/docs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from config import heap
from config.settings import Settings, get_settings
from models.documents import MAX_DEPTH
from orchestrator.api import (
    agents,
    dead_letters,
    errors,
    goals,
    item_templates,
    metrics,
    pauses,
    policies,
    policy_gates,
    queues,
    routing,
    sagas,
    templates,
    timers,
    traceability,
    webhooks,
    work_item_runs,
    work_item_types,
    work_items,
)
from orchestrator.api.auth import MCP_PATH, Authenticate
from orchestrator.api.context import RequestContext
from orchestrator.api.gate import InputGate
from orchestrator.api.limits import BodyLimit
from orchestrator.api.query import strict_query
from orchestrator.api.submit_path import SubmitPath, submit_route
from orchestrator.api.ui import app as ui
from orchestrator.mcp.http import McpEndpoint
from orchestrator.service.wiring import Wiring

# Rules every operation holds its input to, beyond what each schema says: said once here, as the
# OpenAPI has no way to put "no NUL" on every string short of a pattern on each one.
DESCRIPTION = f"""Sagas of work across AI agents, people and ordinary workers.

Input rules that hold for every operation, in addition to each schema (a request that breaks one
is a 422 naming where, and nothing is written):

- No string anywhere (path, query, header, JSON body, object keys included) may contain a NUL
  character (U+0000) or a lone surrogate: workyard stores text in PostgreSQL, which holds neither.
- Numbers in a JSON body must be finite; a JSON body nests at most {MAX_DEPTH} levels deep.
- A query parameter the operation does not declare, or one that takes a single value sent more
  than once, is refused rather than ignored.
- A body larger than the server's limit (`WORKYARD_MAX_REQUEST_BYTES`, 1 MiB by default) is a 413.

Every error has one shape: `{{"error": {{"code", "message", "details": [{{"path", "message"}}]}}}}`.
Every `/api/` operation needs a bearer token (`Authorization: Bearer <token>`, from
`workyard token create`). The same tokens reach workyard's MCP server at `/mcp` (streamable
HTTP), which is not described here. `/metrics` needs an all-tenant token with `metrics:read`
unless the server lets anyone scrape it (`WORKYARD_METRICS_PUBLIC`)."""


def operation_id(route: APIRoute) -> str:
    """``claim_work_item`` -> ``claimWorkItem``: an operation's id in the OpenAPI document."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def create_app(settings: Settings | None = None) -> FastAPI:
    wiring = Wiring(settings or get_settings())
    mcp = McpEndpoint(wiring)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything alive now lives as long as the process: out of the collector's sight.
        heap.settle(heap.BATCH_THRESHOLDS)
        async with mcp.running():
            yield
        wiring.close()

    app = FastAPI(
        title="workyard",
        version="0.1.0",
        lifespan=lifespan,
        description=DESCRIPTION,
        generate_unique_id_function=operation_id,
        # workyard makes each request's span itself (orchestrator.api.context, with its own
        # tracer provider, which FastAPI does not see); FastAPI's telemetry would only ask
        # OpenTelemetry's global providers, on every request, whether any was configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # What any request may be answered, whatever its route: no valid token (401), a body that
        # is malformed JSON (400), too large (413), sent as another media type (415), input the gate
        # refuses (422), the database away (503).
        responses=errors.responses(400, 401, 413, 415, 422, 503),
        # Every operation: an undeclared or repeated query parameter is a 422, not ignored.
        dependencies=[Depends(strict_query)],
    )
    app.state.wiring = wiring
    errors.install(app)
    # Middleware added later runs earlier: the token, then the body's size, then its content,
    # then (innermost, after every check at the door) the submit path upstream systems call.
    app.add_middleware(SubmitPath, wiring=wiring, route=submit_route(sagas.router.routes))
    app.add_middleware(InputGate)
    app.add_middleware(BodyLimit, max_bytes=wiring.settings.max_request_bytes)
    # Added late, so it runs early: no body is read for a caller without a valid token.
    app.add_middleware(Authenticate, wiring=wiring)
    # Around everything, the token check included: a request id, the log context, the request's
    # span and its access-log line.
    app.add_middleware(RequestContext)
    app.include_router(templates.router)
    app.include_router(pauses.router)
    app.include_router(sagas.router)
    app.include_router(work_items.router)
    app.include_router(work_item_runs.router)
    app.include_router(queues.router)
    app.include_router(work_item_types.router)
    app.include_router(item_templates.router)
    app.include_router(webhooks.router)
    app.include_router(agents.router)
    app.include_router(routing.router)
    app.include_router(routing.items_router)
    app.include_router(policies.router)
    app.include_router(policy_gates.router)
    app.include_router(goals.router)
    app.include_router(traceability.router)
    app.include_router(dead_letters.router)
    app.include_router(timers.router)
    app.include_router(metrics.router)
    # The operator page (/ui): HTML, left out of the OpenAPI document.
    ui.install(app)
    # MCP's own protocol (JSON-RPC over streamable HTTP), not an OpenAPI operation: left out of the
    # document, so the query check and the fuzzing, which work from the document, pass it by.
    app.router.routes.append(Route(MCP_PATH, mcp, include_in_schema=False))

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Whether the process answers: {"status": "ok"}. It needs no token and touches no database."""
        return {"status": "ok"}

    app.openapi = _documented_once(app)  # type: ignore[method-assign]
    return app


# OpenAPI documents made in this process, by the routes they describe. The query check reads the
# document at an app's first request with a query: making it (a schema for every model of every
# route) costs more than the rest of an app's start, and apps with the same routes, whatever their
# settings, have the same document. One process serves one app; the tests make one per test.
_DOCUMENTS: dict[tuple[tuple[str, tuple[str, ...], str], ...], dict[str, Any]] = {}


def _documented_once(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``, sharing the document with every app of this process with the same routes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = tuple(
                (r.path, tuple(sorted(r.methods or ())), f"{r.endpoint.__module__}.{r.endpoint.__qualname__}")
                for r in app.routes
                if isinstance(r, APIRoute)
            )
            if routes not in _DOCUMENTS:
                _DOCUMENTS[routes] = FastAPI.openapi(app)
            app.openapi_schema = _DOCUMENTS[routes]
        return app.openapi_schema

    return openapi
