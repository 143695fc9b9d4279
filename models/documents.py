"""What a JSON document (or a string) must be before workyard keeps it.

Every string is made of Unicode scalar values without NUL (PostgreSQL refuses NUL in text and
lone surrogates in JSON, and a lone surrogate that reached SQLite made every later read of the
row fail), every number is finite (NaN and Infinity are not JSON), and nesting is at most
``MAX_DEPTH`` levels deep (deeper documents made parsers and validators recurse until they broke).
The API checks every request against these rules at the door, before anything is written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from models.errors import WorkyardError

# Objects and arrays inside one another: business documents are far shallower than this.
MAX_DEPTH = 64


class DocumentError(WorkyardError, ValueError):
    """A document that breaks one of the rules: where (a dotted path) and why."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message  # the reason alone; str() of the error names the path too


def text_problem(value: str) -> str | None:
    """Why a string cannot be kept, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    for char in value:
        if "\ud800" <= char <= "\udfff":
            return f"contains a lone surrogate (\\u{ord(char):04x}), which is not a Unicode character"
    return None


def keepable(text: str) -> str:
    """``text`` with what a database cannot keep spelled out: NUL as ``\\u0000``, a lone surrogate
    as ``\\udXXX``. For text workyard records from elsewhere (a handler's error message, a
    worker's name) rather than refuses."""
    if text_problem(text) is None:
        return text
    return "".join(f"\\u{ord(c):04x}" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def check_document(value: Any, root: str) -> None:
    """Raise :class:`DocumentError` for the first part of ``value`` that breaks a rule."""
    # Iterative, so a deep document cannot exhaust the stack on its way to being refused.
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                raise DocumentError(path, problem)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise DocumentError(path, "is not a finite number (NaN and Infinity are not JSON)")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise DocumentError(path, f"nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and (problem := text_problem(key)) is not None:
                        raise DocumentError(path, f"has a key that {problem}")
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}.{n}", depth + 1) for n, child in enumerate(item))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str, root: str) -> Any:
    """Parse JSON and check it; a document that breaks a rule is a :class:`DocumentError`.
    Malformed JSON raises ``json.JSONDecodeError`` as usual."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise DocumentError(root, f"nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise DocumentError(root, "holds NaN or Infinity, which are not JSON") from exc
    check_document(value, root)
    return value
