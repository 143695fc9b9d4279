"""Lease numbers refuse JSON booleans (pydantic's lax mode would read true as 1)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from models.work_api import ClaimRequest, HeartbeatRequest, LeaseRequest


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ClaimRequest, {"ttl_s": True}),
        (LeaseRequest, {"lease_epoch": True}),
        (HeartbeatRequest, {"lease_epoch": 1, "ttl_s": False}),
        (HeartbeatRequest, {"lease_epoch": True}),
    ],
)
def test_booleans_are_not_numbers(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="not true or false"):
        model.model_validate(body)


def test_numbers_still_pass() -> None:
    assert ClaimRequest.model_validate({"ttl_s": 30}).ttl_s == 30.0
    assert HeartbeatRequest.model_validate({"lease_epoch": 2.0, "ttl_s": 1.5}).lease_epoch == 2
