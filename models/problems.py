"""How validation problems and unreadable messages are put into words, the same everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# A dead letter keeps at most this much of the message it could not act on.
MAX_BODY_CHARS = 65536


def error_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic / FastAPI validation errors as ``[{path, message}]``, one per failing field."""
    return [{"path": ".".join(map(str, e["loc"])) or "(root)", "message": str(e["msg"])} for e in errors]


def summary(details: Iterable[Mapping[str, str]]) -> str:
    """``path: message; path: message`` for one-line error messages."""
    return "; ".join(f"{d['path']}: {d['message']}" for d in details)


def body_text(body: Any) -> str:
    """A message body as text for a dead letter, whatever it turned out to be."""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")[:MAX_BODY_CHARS]
    if isinstance(body, str):
        return body[:MAX_BODY_CHARS]
    try:
        return json.dumps(body)[:MAX_BODY_CHARS]
    except (TypeError, ValueError):
        return repr(body)[:MAX_BODY_CHARS]
