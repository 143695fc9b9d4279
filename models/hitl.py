"""A human in the loop (the work-items spec §4): a requirement that a person approve an item at
named gates, as a routing rule or a work-item type declares it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

GateName = Annotated[str, Field(min_length=1, max_length=200)]


class Hitl(BaseModel):
    """A human in the loop: the item needs a person's approval at named gates. Routing records the
    requirement on the item and gives such items only to agents of autonomy L2 (supervised) or more."""

    model_config = ConfigDict(extra="forbid")

    required: bool = Field(default=True, description="Whether a person must approve; false: no requirement.")
    gates: list[GateName] = Field(
        default_factory=list, max_length=20, description="Where approval is needed (e.g. privacy_review)."
    )
