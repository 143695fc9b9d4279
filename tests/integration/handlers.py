"""Handlers for the integration tests. They keep their own books in Redis (keys ``test:*``),
outside workyard, so the tests can count calls and side effects independently of it.

Behaviour is chosen per step by the saga input: ``behaviour[<step>]`` or
``behaviour[<step>:compensate]``.
"""

from __future__ import annotations

import gc
import os
import time
from functools import cache
from typing import Any

import redis
from pydantic import BaseModel, Field

from workers import StepContext, StepFailed, step


class Behaviour(BaseModel):
    fail_times: int = 0  # fail (retryably) on the first N calls, then succeed
    fail_always: bool = False
    retryable: bool = True
    sleep_ms: int = 0
    hang_first_call: bool = False  # publish our pid and sleep: the test kills us mid-step
    hold_until_released: bool = False  # run until the test pushes to test:release:<tag> (at most 120 s)


class Cmd(BaseModel):
    tag: str
    account: str | None = None
    behaviour: dict[str, Behaviour] = Field(default_factory=dict)
    items: list[Any] = Field(default_factory=list)  # what a fan-out step fans out over


@cache
def books() -> redis.Redis:
    return redis.Redis.from_url(os.environ["WORKYARD_REDIS_URL"], socket_timeout=10)


def _handle(ctx: StepContext, cmd: Cmd) -> dict[str, Any]:
    r = books()
    # A fan-out's member is known by its index: "fan[3]", "fan[3]:compensate".
    base = ctx.step if ctx.member is None else f"{ctx.step}[{ctx.member}]"
    name = base if ctx.phase == "forward" else f"{base}:compensate"
    behaviour = cmd.behaviour.get(name, Behaviour())
    calls = r.hincrby(f"test:calls:{cmd.tag}", name, 1)
    r.rpush(f"test:keys:{cmd.tag}", f"{name}={ctx.idempotence_key}")
    if ctx.fencing_token is not None:
        active = r.incr(f"test:active:{ctx.mutex_scope}")
        r.rpush(f"test:tokens:{ctx.mutex_scope}", ctx.fencing_token)
        if active > 1:
            r.incr(f"test:overlap:{ctx.mutex_scope}")
    try:
        if behaviour.sleep_ms:
            time.sleep(behaviour.sleep_ms / 1000)
        if behaviour.hold_until_released:
            r.set(f"test:holding:{cmd.tag}", name)
            r.blpop([f"test:release:{cmd.tag}"], timeout=120)
        if behaviour.fail_always or calls <= behaviour.fail_times:
            raise StepFailed(f"{name} failed on call {calls}", retryable=behaviour.retryable)
        # The side effect, made exactly-once with the idempotence key as a real service would.
        if r.set(f"test:effect:{ctx.idempotence_key}", 1, nx=True):
            r.rpush(f"test:effects:{cmd.tag}", name)
        if behaviour.hang_first_call and calls == 1:
            r.set(f"test:pid:{cmd.tag}", os.getpid())
            time.sleep(60)  # the behaviour under test: hang mid-step until the test kills us
        return {"step": name, "calls": calls, **({"each": ctx.each} if ctx.member is not None else {})}
    finally:
        if ctx.fencing_token is not None:
            r.decr(f"test:active:{ctx.mutex_scope}")


def _register(name: str, capability: str) -> None:
    def handler(ctx: StepContext, cmd: Cmd) -> dict[str, Any]:
        return _handle(ctx, cmd)

    handler.__name__ = name
    step(name, capability=capability)(handler)


for _name, _cap in [
    ("one", "alpha"),
    ("undo_one", "alpha"),
    ("two", "beta"),
    ("undo_two", "beta"),
    ("three", "alpha"),
    ("locked", "alpha"),
    ("slow", "alpha"),
    ("fan_each", "beta"),
    ("undo_fan_each", "beta"),
]:
    _register(_name, _cap)


@step("heap", capability="alpha")
def heap(ctx: StepContext, cmd: Cmd) -> dict[str, Any]:
    """The pool process's garbage collector as a step finds it (config.heap)."""
    return {"frozen": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}
