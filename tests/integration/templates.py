"""Templates the integration tests register."""

from __future__ import annotations

from typing import Any

FAST_RETRY = {"max_attempts": 3, "initial_ms": 50, "max_ms": 200, "jitter": 0.0}

THREE_STEPS: dict[str, Any] = {
    "name": "it.three",
    "version": "1.0.0",
    "input_schema": {"type": "object", "required": ["tag"], "properties": {"tag": {"type": "string"}}},
    "steps": [
        {
            "name": "one",
            "capability": "alpha",
            "handler": "one",
            "compensate": "undo_one",
            "retry": FAST_RETRY,
            "compensate_retry": {**FAST_RETRY, "max_attempts": 4},
        },
        {
            "name": "two",
            "capability": "beta",
            "handler": "two",
            "compensate": "undo_two",
            "retry": FAST_RETRY,
            "compensate_retry": {**FAST_RETRY, "max_attempts": 4},
        },
        {"name": "three", "capability": "alpha", "handler": "three", "retry": FAST_RETRY},
    ],
}

LOCKED: dict[str, Any] = {
    "name": "it.locked",
    "version": "1.0.0",
    "steps": [
        {
            "name": "locked",
            "capability": "alpha",
            "handler": "locked",
            "mutex_scope": "acct:{input.account}",
            "retry": FAST_RETRY,
        },
    ],
}
