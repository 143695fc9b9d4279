"""Logging set-up shared by every workyard process: text for a terminal, JSON lines for a
collector, and the context every line carries (request id, saga id, tenant).

``WORKYARD_LOG_FORMAT``: ``text`` (the default) or ``json``, one object per line with ``ts``,
``level``, ``logger``, ``message``, the context set by :func:`log_context` where there is one
(``request_id`` in the API, ``saga_id`` and ``tenant`` in the API, the coordinator and the
worker), ``trace_id`` and ``span_id`` while a span is current, fields passed as ``extra=``, and
``exc_info`` for an exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from config import tracing

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What the current request, report or step run is about; every log line made meanwhile says so.
CONTEXT_FIELDS = ("request_id", "saga_id", "tenant", "step")
_context: ContextVar[dict[str, str] | None] = ContextVar("workyard_log_context", default=None)

# Attributes every LogRecord has: what is not one of these came from ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def current_context() -> dict[str, str]:
    """The log context in force (a copy)."""
    return dict(_context.get() or {})


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Every log line made inside carries ``fields`` (those not None), on top of the context in force."""
    values = {k: v for k, v in fields.items() if v is not None}
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


def enter_log_context(**fields: Any) -> Token[dict[str, str] | None]:
    """:func:`log_context` for code that cannot wrap a block (hooks called before and after):
    the token to hand to :func:`leave_log_context`. Fields that are None or not text are left out."""
    values = {k: v for k, v in fields.items() if isinstance(v, str)}
    return _context.set({**(_context.get() or {}), **values})


def leave_log_context(token: Token[dict[str, str] | None]) -> None:
    _context.reset(token)


def set_log_context(**fields: str | None) -> None:
    """Add ``fields`` to the context in force until it ends (the request, the task): for code that
    learns what it works on half-way (a submit learns its saga's id)."""
    values = {k: v for k, v in fields.items() if v is not None}
    _context.set({**(_context.get() or {}), **values})


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context.get() or {})
        if tracing.enabled():
            span = trace.get_current_span().get_span_context()
            if span.is_valid:
                line["trace_id"] = f"{span.trace_id:032x}"
                line["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the log context appended where there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One event, one line: a message carrying what a caller sent (a path, a reason) cannot
        # forge a line of its own. (A traceback, appended after this, keeps its lines.)
        message = record.message
        record.message = escape_controls(message)
        try:
            text = super().formatMessage(record)
        finally:
            record.message = message
        context = _context.get()
        if context:
            text += " [" + " ".join(f"{k}={escape_controls(str(v))}" for k, v in context.items()) + "]"
        return text


_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with its control characters (line breaks included) written as escapes."""
    return _CONTROLS.sub(lambda m: repr(m.group())[1:-1], text)


def log_format(value: str | None = None) -> str:
    """The format asked for (``WORKYARD_LOG_FORMAT``), ``text`` by default."""
    chosen = (value or os.environ.get("WORKYARD_LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"WORKYARD_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def formatter(fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter() if log_format(fmt) == "json" else TextFormatter()


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Log to stderr at ``level`` (``WORKYARD_LOG_LEVEL``, INFO) in ``fmt`` (``WORKYARD_LOG_FORMAT``)."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a process whose logging is set up keeps it
        root.setLevel((level or os.environ.get("WORKYARD_LOG_LEVEL", "INFO")).upper())
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(fmt))
        root.addHandler(handler)
    # Their INFO lines are about themselves, not about workyard's work.
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
