"""What a handler gets besides its input model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from models.enums import Phase


@dataclass(frozen=True)
class StepContext:
    """Identity of the running step.

    ``idempotence_key`` is the same for every attempt and every redelivery of this step of this
    saga: pass it to the systems you call so a repeated call has no second effect.
    ``fencing_token`` (set when the step has a mutex scope) grows with every lease granted on
    that scope: a resource that remembers the highest token it saw can refuse a stale writer.
    """

    saga_id: str
    step: str
    phase: Phase
    attempt: int
    idempotence_key: str
    fencing_token: int | None = None
    mutex_scope: str | None = None
    # Outputs of the saga's steps that already succeeded, by step name.
    results: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    # In a fan-out step (``for_each``): which member this is, and its element of the list.
    member: int | None = None
    each: Any = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            logging.getLogger(f"workyard.step.{self.step}"),
            {"saga_id": self.saga_id, "attempt": self.attempt},
        )
