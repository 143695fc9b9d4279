"""The fault runs' order saga: reserve (fa), charge (fb, one account at a time), ship (fc).

Each handler writes its effect to a file of the run's own (``WORKYARD_FAULT_EFFECTS``): one JSON
line, appended with O_APPEND so that lines from every process land whole and in the order they
happened. Nothing the faults touch (Redis, the database, the broker) holds the count.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pydantic import BaseModel, Field

from workers import StepContext, StepFailed, step

RETRY = {"max_attempts": 8, "initial_ms": 200, "max_ms": 2000, "jitter": 0.1}

TEMPLATE: dict[str, Any] = {
    "name": "faults.order",
    "version": "1.0.0",
    "steps": [
        {
            "name": "reserve",
            "capability": "fa",
            "handler": "fault_reserve",
            "compensate": "fault_release",
            "retry": RETRY,
        },
        {
            "name": "charge",
            "capability": "fb",
            "handler": "fault_charge",
            "compensate": "fault_refund",
            "mutex_scope": "account:{input.account}",
            "retry": RETRY,
        },
        {"name": "ship", "capability": "fc", "handler": "fault_ship", "retry": RETRY},
    ],
}


class Order(BaseModel):
    """One order of a fault run: which step fails for good, and how long each step takes."""

    tag: str
    account: str
    fail_at: str | None = None
    delay_ms: dict[str, int] = Field(default_factory=dict)


def effect(ctx: StepContext, order: Order) -> dict[str, Any]:
    line = {
        "tag": order.tag,
        "account": order.account,
        "step": ctx.step,
        "phase": str(ctx.phase),
        "attempt": ctx.attempt,
        "token": ctx.fencing_token,
        "pid": os.getpid(),
        "t": time.time(),
    }
    fd = os.open(os.environ["WORKYARD_FAULT_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    return {"step": ctx.step, "token": ctx.fencing_token}


def forward(ctx: StepContext, order: Order) -> dict[str, Any]:
    delay = order.delay_ms.get(ctx.step, 0)
    if delay:
        time.sleep(delay / 1000)  # a slow step: a kill or a pause lands in the middle of it
    if order.fail_at == ctx.step:
        raise StepFailed(f"{ctx.step} fails for order {order.tag} (fail_at)", retryable=False)
    return effect(ctx, order)


@step("fault_reserve", capability="fa")
def fault_reserve(ctx: StepContext, order: Order) -> dict[str, Any]:
    return forward(ctx, order)


@step("fault_release", capability="fa")
def fault_release(ctx: StepContext, order: Order) -> dict[str, Any]:
    return effect(ctx, order)


@step("fault_charge", capability="fb")
def fault_charge(ctx: StepContext, order: Order) -> dict[str, Any]:
    return forward(ctx, order)


@step("fault_refund", capability="fb")
def fault_refund(ctx: StepContext, order: Order) -> dict[str, Any]:
    return effect(ctx, order)


@step("fault_ship", capability="fc")
def fault_ship(ctx: StepContext, order: Order) -> dict[str, Any]:
    return forward(ctx, order)
