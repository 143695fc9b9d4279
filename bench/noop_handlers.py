"""Three no-op steps for the throughput benchmark."""

from __future__ import annotations

from pydantic import BaseModel

from workers import StepContext, step


class Noop(BaseModel):
    """The input and the result of each bench step: the saga's number, passed through untouched."""

    n: int = 0


@step("bench_a", capability="bench")
def bench_a(ctx: StepContext, cmd: Noop) -> Noop:
    return cmd


@step("bench_b", capability="bench")
def bench_b(ctx: StepContext, cmd: Noop) -> Noop:
    return cmd


@step("bench_c", capability="bench")
def bench_c(ctx: StepContext, cmd: Noop) -> Noop:
    return cmd
