"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from models.api import ErrorBody
from models.errors import error_document
from models.problems import error_details, summary
from orchestrator.api.ui.html import error_response as page_response
from orchestrator.api.ui.html import is_ui_path
from orchestrator.errors import OrchestratorError
from orchestrator.storage.db import is_transient

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The one error shape; ``details`` is always a list."""
    return JSONResponse(status_code=status, content=error_document(code, message, details))


def unavailable_response(exc: BaseException) -> JSONResponse:
    """The database is away or busy: nothing was done, and the same request may be sent again
    (with its idempotence key, a submit that did commit answers with the saga it made)."""
    log.warning("answering 503: %s: %s", type(exc).__name__, exc)
    response = error_response(503, "unavailable", "the database is unavailable or busy; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def json_response(model: BaseModel, status: int) -> Response:
    """``model`` as the answer, as built: FastAPI would validate an endpoint's return value
    against its response model once more, in the thread pool for a plain function (a thread hop
    and a copy, on the paths upstream systems call most). The endpoint still declares its
    response model for the OpenAPI document."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def api_error_response(exc: Exception) -> Response:
    """What the app's exception handlers answer for ``exc`` raised by an API operation (not a
    /ui page): for code that answers a request itself (``orchestrator.api.submit_path``)."""
    if isinstance(exc, OrchestratorError):
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"  # RFC 9110: a 401 names the scheme it wants
        return response
    if isinstance(exc, SQLAlchemyError):
        if is_transient(exc):
            return unavailable_response(exc)
        log.error("unhandled database error", exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has the details")
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer."""
    return {status: {"model": ErrorBody} for status in statuses}


def install(app: FastAPI) -> None:
    @app.exception_handler(OrchestratorError)
    async def _ours(request: Request, exc: OrchestratorError) -> Response:
        if is_ui_path(request.url.path):
            return page_response(exc.status, exc.message)
        return api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if is_ui_path(request.url.path):
            return page_response(422, f"not valid: {summary(error_details(errors))}")
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = errors[0].get("ctx") or {}
            return error_response(
                400, "malformed_json", f"request body is not valid JSON: {ctx.get('error', '')}".strip()
            )
        details = error_details(errors)
        return error_response(422, "invalid_input", f"request is not valid: {summary(details)}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if is_ui_path(request.url.path):
            return page_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110: a 405 names every method the resource takes. The router names only those
            # of the first route on the path, and a path may have one route per method.
            response.headers["Allow"] = ", ".join(_allowed(request))
        return response

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> Response:
        if is_transient(exc):
            if is_ui_path(request.url.path):
                log.warning("answering 503: %s: %s", type(exc).__name__, exc)
                return page_response(503, "the database is unavailable or busy; retry shortly", {"Retry-After": "1"})
            return unavailable_response(exc)
        if is_ui_path(request.url.path):
            log.exception("unhandled database error")
            return page_response(500, "internal error; the server log has the details")
        return api_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if is_ui_path(request.url.path):
            log.exception("unhandled error")
            return page_response(500, "internal error; the server log has the details")
        return api_error_response(exc)


def _allowed(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path."""
    table = getattr(request.app.state, "allow_table", None)
    if table is None:
        table = [
            (compile_path(path)[0], sorted(method.upper() for method in operations))
            for path, operations in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allow_table = table
    return sorted({m for pattern, methods in table if pattern.match(request.url.path) for m in methods})
