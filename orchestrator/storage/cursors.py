"""Opaque page cursors: the sort key of the last row of a page, base64-encoded."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from models.documents import loads
from orchestrator.errors import InvalidInput


def encode_cursor(*key: Any) -> str:
    raw = json.dumps([k.isoformat() if isinstance(k, datetime) else k for k in key])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """Decode a cursor whose parts have the given types (datetime parts must carry a zone)."""
    try:
        parts = loads(base64.urlsafe_b64decode(cursor.encode()).decode(), "cursor")
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        values: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                moment = datetime.fromisoformat(part)
                if moment.tzinfo is None:
                    raise ValueError("cursor time has no zone")
                values.append(moment)
            elif kind is int and isinstance(part, int) and not isinstance(part, bool):
                if not -(2**63) <= part < 2**63:
                    raise ValueError("cursor number out of range")  # a database's BIGINT holds no more
                values.append(part)
            elif isinstance(part, kind) and kind is not int:
                values.append(part)
            else:
                raise ValueError(f"expected {kind.__name__}")
        return tuple(values)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "cursor is not one this API returned", details=[{"path": "cursor", "message": "malformed"}]
        ) from exc
