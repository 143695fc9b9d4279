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
    """A message body as text for a dead letter, whatever it turned out to be: bytes that are not
    UTF-8 as ``\\xNN`` escapes, at most :data:`MAX_BODY_CHARS`."""
    if isinstance(body, bytes):
        # Not decoded in full: a huge body would cost its whole size to keep a bounded part.
        text = body[: MAX_BODY_CHARS * 4].decode("utf-8", errors="backslashreplace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = json.dumps(body)
        except (TypeError, ValueError):
            text = repr(body)
    # PostgreSQL's text cannot hold NUL: a body with one would fail its dead letter's insert.
    return text[:MAX_BODY_CHARS].replace("\x00", "\\x00")[:MAX_BODY_CHARS]
