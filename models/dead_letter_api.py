"""The API's schemas for dead letters: messages nobody could act on, kept with the reason."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

PREVIEW_CHARS = 200


class DeadLetterSummary(BaseModel):
    """A dead letter as a listing shows it: where it came from, why, and the start of its body."""

    id: int = Field(description="The dead letter's id; later ones have larger ids.")
    source: str = Field(description="The queue it came from (cap.<capability>, workyard.orchestrator, ...).")
    reason: str = Field(description="Why nobody could act on it.")
    received_at: datetime = Field(description="When it was dead-lettered.")
    body_preview: str = Field(description=f"The first {PREVIEW_CHARS} characters of its body.")
    body_chars: int = Field(description="The length of its body as kept, in characters.")
    replayable: bool = Field(
        description="Whether replay knows its queue and its body is a message that queue takes (JSON)."
    )


class DeadLetterRead(DeadLetterSummary):
    """One dead letter with its whole body as kept (bodies are cut at 64 KiB when dead-lettered)."""

    body: str = Field(description="The message as it arrived (text; bytes that are not UTF-8 as \\xNN escapes).")


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetterSummary] = Field(description="The dead letters of this page.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class DeadLetterReplayed(BaseModel):
    """What a replay did: the message went (through the outbox) to its queue, and the dead letter is gone."""

    id: int = Field(description="The dead letter replayed (deleted now).")
    queue: str = Field(description="The queue it was published to again.")


class DeadLetterFilter(BaseModel):
    """Which dead letters a purge applies to: all of the conditions given (none: every one)."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, max_length=200, description="Only those from this queue.")
    reason_contains: str | None = Field(
        default=None, min_length=1, max_length=500, description="Only those whose reason contains this text."
    )
    received_before: datetime | None = Field(default=None, description="Only those dead-lettered before this time.")


class DeadLetterPurge(BaseModel):
    """Delete the dead letters a filter matches: by default a dry run that counts them."""

    model_config = ConfigDict(extra="forbid")

    filter: DeadLetterFilter = Field(default_factory=DeadLetterFilter, description="Which dead letters.")
    dry_run: bool = Field(default=True, description="Only count (the default): send false, with expect, to delete.")
    expect: int | None = Field(
        default=None,
        ge=0,
        description="To delete: the count a dry run answered; if the filter matches another number now, nothing "
        "is deleted (409), so that an operator deletes what was shown.",
    )


class DeadLetterPurged(BaseModel):
    """What a purge matched and deleted."""

    matched: int = Field(description="How many dead letters the filter matches (before deleting).")
    deleted: int = Field(description="How many were deleted (0 on a dry run).")
    dry_run: bool = Field(description="Whether nothing was deleted.")
