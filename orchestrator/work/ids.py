"""Deterministic, readable work-item ids: ``WI-{TENANT}-{TYPE}-{yyyymmdd}-{HASH}`` (the
work-items spec, 13.2). With an idempotence key the hash comes from the key, so a retry names the
same item; without one it comes from a random nonce. A salt resolves the rare hash collision."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

HASH_CHARS = 10  # 40 bits: collisions within one tenant, type and day stay rare at millions a day
_UNSAFE = re.compile(r"[^A-Z0-9]+")


def _part(text: str, limit: int) -> str:
    return _UNSAFE.sub("", text.upper())[:limit] or "X"


def work_item_id(tenant: str, item_type: str, at: datetime, idempotence_key: str | None, salt: int = 0) -> str:
    seed = idempotence_key if idempotence_key is not None else uuid.uuid4().hex
    digest = hashlib.sha256(f"{tenant}\x00{item_type}\x00{seed}\x00{salt}".encode()).hexdigest()
    return f"WI-{_part(tenant, 24)}-{_part(item_type, 24)}-{at:%Y%m%d}-{digest[:HASH_CHARS].upper()}"
