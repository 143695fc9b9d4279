"""What every request carries: a request id, the log context, its span, and an access-log line.

The request id is the caller's ``X-Request-ID`` when it sends a sane one (up to 128 letters,
digits and ``-_.:/+=``), else a new one; the answer echoes it in ``X-Request-ID``. Every log line
made while the request is served names it. When tracing, the request is a server span, continuing
the caller's ``traceparent`` header; a saga submitted by it starts its trace there.

After each request one line goes to the ``workyard.access`` logger at INFO: method, path, status,
duration in ms, request id and the principal that called (``user:<id>``, ``agent:<id>``, or
none when the request named no valid token).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry.trace import Span

from config import tracing
from config.logging import log_context
from models.principal import Principal
from orchestrator.api.auth import PRINCIPAL_KEY

access_log = logging.getLogger("workyard.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_ID = re.compile(r"[A-Za-z0-9\-_.:/+=]{1,128}")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's request id if it sent a sane one, else a new one."""
    for name, value in headers:
        if name == _REQUEST_ID_KEY:
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestContext:
    """The outermost middleware: a request id, the log context, a span and the access log for each
    HTTP request (see the module)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers") or []
        request_id = request_id_of(headers)
        echoed = (REQUEST_ID_HEADER.encode(), request_id.encode())
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        method, path = scope["method"], scope["path"]
        with log_context(request_id=request_id), _server_span(method, path, headers) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                principal = (scope.get("state") or {}).get(PRINCIPAL_KEY)
                who = f"{principal.type.value}:{principal.id}" if isinstance(principal, Principal) else None
                if span is not None:
                    route = getattr(scope.get("route"), "path", None)
                    if route:
                        span.update_name(f"{method} {route}")
                        span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if who is not None:
                        span.set_attribute("workyard.principal", who)
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                access_log.info(
                    "%s %s %d %.1f ms",
                    method,
                    path,
                    status,
                    duration_ms,
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": duration_ms,
                        "principal": who,
                        **({"tenant": principal.tenant} if isinstance(principal, Principal) else {}),
                    },
                )


def _server_span(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> AbstractContextManager[Span | None]:
    """The request's span (None when not tracing), after the caller's ``traceparent`` if it sent one."""
    if not tracing.enabled():
        return nullcontext()
    parent = next((v.decode("latin-1") for k, v in headers if k == b"traceparent"), None)
    return tracing.span(
        f"{method} {path}",
        kind=tracing.SERVER,
        parent=parent,
        attributes={"http.request.method": method, "url.path": path},
    )
