"""The root of workyard's own errors.

Every error workyard raises on purpose derives from :class:`WorkyardError`, and says what its
caller can do about it: whether trying the same thing again may help (``retryable``), and, where
an HTTP answer applies, its status and stable code. A message is built from structured fields,
and ``details`` holds them (a list of ``{path, message}`` for bad input, a dict otherwise).
"""

from __future__ import annotations

from typing import Any


class WorkyardError(Exception):
    """Root of every error workyard raises (see the module)."""

    # Whether the same call may succeed if tried again later.
    retryable: bool = False
    # The HTTP status that answers it, where one applies (None: not an error of the request).
    status: int | None = None
    code: str = "error"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details


def error_document(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape every interface answers with, ``{"error": {"code", "message", "details"}}``:
    ``details`` is always a list (a dict of facts becomes one entry at the root)."""
    if details is None:
        details = []
    elif isinstance(details, dict):
        details = [{"path": "(root)", "message": message, **details}]
    return {"error": {"code": code, "message": message, "details": details}}
