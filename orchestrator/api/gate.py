"""The input gate: every request is checked once, at the door, before anything is written.

A string that is not made of Unicode scalar values, a NUL, a number that is not finite, or a
document nested deeper than ``models.documents.MAX_DEPTH`` is a 422 naming the field, in the
path, the query, the headers and a JSON body alike. A body sent to the API with a content type
other than JSON, or with none, is a 415 that says which header to send. Malformed JSON is left to the framework (a
400 ``malformed_json``); a body over the size limit never gets here (``BodyLimit``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from models.documents import DocumentError, loads, text_problem

Scope = dict[str, Any]
Message = dict[str, Any]


class InputGate:
    """ASGI middleware that answers 422 for input workyard cannot keep (see the module)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _url_problem(scope) or _header_problem(scope)
        if problem is not None:
            await _refuse(send, problem)
            return
        if not _is_json(scope) and not _takes_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message: Message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay([message]), send)  # the client left: nothing to check
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        if body and not _is_json(scope):
            # A body the API would read as anything but JSON (curl -d sends a form's type): say
            # what to send, instead of a 422 about a "dictionary" the caller did send.
            await _send_error(send, 415, "unsupported_media_type", _media_message(scope), "content-type", "not JSON")
            return
        if body:
            try:
                loads(body, "body")
            except DocumentError as exc:
                await _refuse(send, exc)
                return
            except ValueError:
                pass  # malformed JSON (or not UTF-8): the framework answers 400 malformed_json
        await self.app(scope, replay([{"type": "http.request", "body": body, "more_body": False}]), send)


def replay(messages: list[Message]) -> Any:
    """An ASGI ``receive`` that hands out ``messages`` (a body already read), then a disconnect."""

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    return receive


def _is_json(scope: Scope) -> bool:
    if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return False
    # No content type is not JSON: the framework would not read such a body (a guard against
    # cross-site form posts), so the API says what to send instead.
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    return bool(media == b"application/json" or media.endswith(b"+json"))


def _takes_json(scope: Scope) -> bool:
    """Every API operation with a body takes JSON."""
    return scope.get("method") in ("POST", "PUT", "PATCH") and str(scope.get("path", "")).startswith("/api/")


def _media_message(scope: Scope) -> str:
    sent = dict(scope.get("headers") or []).get(b"content-type")
    said = f"is sent as {sent.decode('latin-1')!r}" if sent else "has no content-type"
    return (
        f"the body {said}, but this API takes JSON: send the header "
        "'content-type: application/json' (curl: -H 'content-type: application/json')"
    )


def _url_problem(scope: Scope) -> DocumentError | None:
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    if (problem := _bytes_problem(unquote_to_bytes(raw_path))) is not None:
        return DocumentError("path", problem)
    query: bytes = scope.get("query_string") or b""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" "))
        for part in (key, unquote_to_bytes(value.replace(b"+", b" "))):
            if (problem := _bytes_problem(part)) is not None:
                return DocumentError(f"query.{key.decode('utf-8', 'replace')}", problem)
    return None


# Headers whose value workyard keeps or compares as text: they must be UTF-8 too. (Others may
# carry any bytes HTTP allows, short of NUL.)
TEXT_HEADERS = (b"idempotency-key",)


def _header_problem(scope: Scope) -> DocumentError | None:
    for name, value in scope.get("headers") or []:
        if name.lower() in TEXT_HEADERS:
            problem = _bytes_problem(value)
        else:
            problem = "contains a NUL character (\\u0000)" if b"\x00" in value else None
        if problem is not None:
            return DocumentError(f"header.{name.decode('latin-1')}", problem)
    return None


def _bytes_problem(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    return text_problem(text)


async def _refuse(send: Any, problem: DocumentError) -> None:
    message = f"request is not valid: {problem.path}: {problem.message}"
    await _send_error(send, 422, "invalid_input", message, problem.path, problem.message)


async def _send_error(send: Any, status: int, code: str, message: str, path: str, problem: str) -> None:
    body = json.dumps(
        {"error": {"code": code, "message": message, "details": [{"path": path, "message": problem}]}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
