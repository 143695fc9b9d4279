"""Puts the operator page on the API: its routers, its redirects to sign in, its headers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from orchestrator.api.ui import bulk, items, ops, sagas, signin
from orchestrator.api.ui.access import SignInNeeded
from orchestrator.api.ui.html import SECURITY_HEADERS, error_response, is_ui_path, url
from orchestrator.api.ui.session import NoSessionSecret


def install(app: FastAPI) -> None:
    """Add the pages to ``app``, and what answers their sign-in redirects and missing secret."""
    for module in (signin, bulk, sagas, items, ops):
        app.include_router(module.router)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(url("/signin"), status_code=303)

    @app.exception_handler(NoSessionSecret)
    async def _no_secret(request: Request, exc: NoSessionSecret) -> Response:
        return error_response(503, str(exc))

    app.add_middleware(UiHeaders)


class UiHeaders:
    """Adds SECURITY_HEADERS to every /ui answer; passes everything else by untouched."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_ui_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
