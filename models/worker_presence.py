"""A Celery worker's presence record: what a worker announces about itself in Redis, and what
the orchestrator folds into the agent registry (a worker host has no database credentials)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class WorkerPresence(BaseModel):
    """One worker as it announces itself: its Celery name, the capabilities it consumes, how many
    steps it runs at once, and since when it runs."""

    model_config = ConfigDict(extra="ignore")  # a newer worker may say more than this orchestrator reads

    name: str = Field(min_length=1, max_length=255, description="The worker's Celery node name (-n).")
    capabilities: list[str] = Field(description="The capabilities whose queues (cap.<name>) it consumes.")
    concurrency: int = Field(ge=1, description="Steps it runs at once (its pool's size).")
    started_at: AwareDatetime = Field(description="When the worker process started.")
    beat_at: AwareDatetime = Field(description="When it wrote this record (the worker's clock).")
    pid: int | None = Field(default=None, description="Its main process's id, for an operator.")
    host: str | None = Field(default=None, description="Its host's name, for an operator.")

    def is_newer_than(self, moment: datetime) -> bool:
        """Whether the worker started after ``moment`` (a restart since an operator deregistered it)."""
        return self.started_at > moment
