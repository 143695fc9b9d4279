"""API schemas of the operators' listing of durable timers (``GET /api/v1/timers``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TimerRead(BaseModel):
    """A durable timer: what fires when, for which saga or work item."""

    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="What it does when due: dispatch (a retry), saga_deadline, sla_warn, ...")
    due_at: datetime = Field(description="When it comes due (a paused saga's clocks: far in the future).")
    saga_id: str | None = Field(description="The saga it belongs to; null: a work item's.")
    item_id: str | None = Field(description="The work item it belongs to; null: a saga's.")
    payload: dict[str, Any] = Field(description="What it carries (a retry: step index, phase, attempt).")


class DeadlineRead(BaseModel):
    """A running attempt's deadline (kept on the attempt, not as a timer)."""

    saga_id: str = Field(description="The saga.")
    step_name: str = Field(description="The step.")
    phase: str = Field(description="forward or compensate.")
    attempt: int = Field(description="The attempt's number.")
    deadline_at: datetime = Field(description="When it times out without a report.")


class TimerListing(BaseModel):
    """Pending timers, soonest first, then the deadlines of running attempts, with their counts."""

    now: datetime = Field(description="The server's clock when it listed them.")
    total: int = Field(description="Timers pending (that match the filters).")
    due: int = Field(description="Of those, due now (the timer loop fires them shortly; many: it lags).")
    timers: list[TimerRead] = Field(description="The soonest of them, up to the limit.")
    watched: int = Field(description="Running attempts with a deadline (that match the filters).")
    late: int = Field(description="Of those, past their deadline.")
    deadlines: list[DeadlineRead] = Field(description="The soonest of those deadlines, up to the limit.")
