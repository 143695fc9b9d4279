"""The FastAPI application (OpenAPI at ``/docs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from config.settings import Settings, get_settings
from orchestrator.api import errors, queues, sagas, templates, webhooks, work_item_types, work_items
from orchestrator.api.auth import Authenticate
from orchestrator.api.gate import InputGate
from orchestrator.api.limits import BodyLimit
from orchestrator.service.wiring import Wiring


def operation_id(route: APIRoute) -> str:
    """``claim_work_item`` -> ``claimWorkItem``: an operation's id in the OpenAPI document."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def create_app(settings: Settings | None = None) -> FastAPI:
    wiring = Wiring(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        wiring.close()

    app = FastAPI(
        title="workyard",
        version="0.1.0",
        lifespan=lifespan,
        description="Sagas of work across AI agents, people and ordinary workers.",
        generate_unique_id_function=operation_id,
        # What any request may be answered, whatever its route: no valid token (401), a body that
        # is not JSON (400), too large (413), input the gate refuses (422), the database away (503).
        responses=errors.responses(400, 401, 413, 422, 503),
    )
    app.state.wiring = wiring
    errors.install(app)
    # Middleware added later runs earlier: the token, then the body's size, then its content.
    app.add_middleware(InputGate)
    app.add_middleware(BodyLimit, max_bytes=wiring.settings.max_request_bytes)
    # Added last, so it runs first: no body is read for a caller without a valid token.
    app.add_middleware(Authenticate, wiring=wiring)
    app.include_router(templates.router)
    app.include_router(sagas.router)
    app.include_router(work_items.router)
    app.include_router(queues.router)
    app.include_router(work_item_types.router)
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
