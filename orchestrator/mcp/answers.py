"""How a backend's answer becomes what an MCP client reads.

A tool's answer is the API's own model as structured content, and the same JSON as text (for
hosts that show a model only the text). A failure is a tool error (``isError``), not a protocol
error, so the agent reads it and can act: its text is ``"<code>: <message>"`` and its structured
content is the HTTP API's error shape, ``{"error": {"code", "message", "details"}}``. A resource
that cannot be read is a protocol error carrying the same shape as its data (MCP has no error
result for resources).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pydantic_core
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent

from models.errors import WorkyardError, error_document

log = logging.getLogger(__name__)

INTERNAL = "internal error; the server log has the details"


def answer(call: Callable[[], Any], *, wrap: bool = False, empty: str | None = None) -> CallToolResult:
    """Run ``call`` (one backend method) and answer with its result or its error.

    ``wrap``: the tool's output schema is ``{"result": ...}`` (the SDK's shape for a result that is
    not an object: a list, or a model or null). ``empty``: the text to show for a ``None`` result,
    so an agent reads a sentence rather than ``null``.
    """
    try:
        value = call()
    except Exception as exc:
        return failure(exc)
    data = pydantic_core.to_jsonable_python(value, by_alias=True)
    structured = {"result": data} if wrap else data
    text = empty if value is None and empty is not None else json.dumps(data, ensure_ascii=False)
    return CallToolResult(content=[TextContent(text=text)], structured_content=structured)


def failure(exc: Exception) -> CallToolResult:
    """A tool error for ``exc``: workyard's code, message and details; anything unexpected is an
    ``internal`` error whose traceback stays in the server's log."""
    document = describe(exc)
    error = document["error"]
    return CallToolResult(
        content=[TextContent(text=f"{error['code']}: {error['message']}")], structured_content=document, is_error=True
    )


def resource_error(exc: Exception) -> MCPError:
    """The protocol error a failed resource read answers with: invalid params for what the caller
    can change (an unknown name, a token without the scope), internal for the rest."""
    document = describe(exc)
    status = getattr(exc, "status", None)
    code = INVALID_PARAMS if isinstance(status, int) and status < 500 else INTERNAL_ERROR
    error = document["error"]
    return MCPError(code=code, message=f"{error['code']}: {error['message']}", data=document)


def describe(exc: Exception) -> dict[str, Any]:
    """The API's error document for ``exc``."""
    if isinstance(exc, WorkyardError):
        return error_document(exc.code, exc.message, exc.details)
    log.error("an MCP call failed unexpectedly", exc_info=exc)
    return error_document("internal", INTERNAL)
