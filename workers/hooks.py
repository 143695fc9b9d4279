"""Hooks around every step a worker runs; override what you need."""

from __future__ import annotations

import logging

from workers.context import StepContext

log = logging.getLogger(__name__)


class Hooks:
    """No-op hooks. ``before_step`` run in the order added, ``after_step`` in reverse."""

    def before_step(self, ctx: StepContext) -> None:
        """Called before the handler (not for a duplicate that replays a stored result)."""

    def after_step(self, ctx: StepContext, *, result: object = None, error: BaseException | None = None) -> None:
        """Called after the handler returned or raised."""


class HookChain:
    """Runs hooks; a hook that crashes is logged, never raised into the step."""

    def __init__(self) -> None:
        self._hooks: list[Hooks] = []

    def add(self, hooks: Hooks) -> None:
        self._hooks.append(hooks)

    def before(self, ctx: StepContext) -> None:
        for hook in self._hooks:
            try:
                hook.before_step(ctx)
            except Exception:
                log.exception("hook %r failed in before_step", hook)

    def after(self, ctx: StepContext, result: object, error: BaseException | None) -> None:
        for hook in reversed(self._hooks):
            try:
                hook.after_step(ctx, result=result, error=error)
            except Exception:
                log.exception("hook %r failed in after_step", hook)
