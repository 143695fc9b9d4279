"""Kinds and keys of the saga timers (one durable timer table serves them all).

An attempt's own deadline is not a timer: it is kept on the attempt's row (``deadline_at``).
"""

from __future__ import annotations

from models.enums import Phase

TIMER_DISPATCH = "dispatch"  # a retry's next attempt
TIMER_SAGA_DEADLINE = "saga_deadline"  # the whole saga's deadline


def timer_key(kind: str, saga_id: str, index: int, phase: Phase | str, attempt_no: int) -> str:
    """Unique per thing scheduled: scheduling it twice keeps one timer, and cancelling finds it."""
    return f"{kind}:{saga_id}:{index}:{Phase(phase).value}:{attempt_no}"
