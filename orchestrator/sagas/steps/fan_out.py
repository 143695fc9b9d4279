"""What the two kinds of fan-out share: their members' list, and closing an attempt on the
completion policy's verdict."""

from __future__ import annotations

from typing import Any

from models.enums import Outcome, Phase
from models.keytemplate import KeyTemplateError, render_value
from models.messages import StepReport
from models.step_item import EVERY_MEMBER, CompletionPolicy
from models.tables import SagaRun, StepAttempt
from models.template import StepSpec, TemplateSpec
from orchestrator.sagas.steps.kind import StepMoves
from orchestrator.work.links import ItemSpecError, item_values


def policy(step_spec: StepSpec, phase: Phase) -> CompletionPolicy:
    """Going forward, the step's completion policy; undoing needs every member undone."""
    return step_spec.completion if phase is Phase.forward else EVERY_MEMBER


def list_elements(saga: SagaRun, spec: TemplateSpec, index: int) -> list[tuple[int, Any]]:
    """The elements of the list a fan-out step runs over (``for_each``), numbered."""
    step_spec = spec.steps[index]
    assert step_spec.for_each is not None
    try:
        elements = render_value(step_spec.for_each, item_values(saga, spec, step_spec))
    except KeyTemplateError as exc:  # the list is not in the saga: no retry will change that
        raise ItemSpecError(str(exc)) from exc
    if not isinstance(elements, list):
        raise ItemSpecError(f"for_each {step_spec.for_each} is not a list but {type(elements).__name__}")
    return list(enumerate(elements))


def end_fan_out(
    moves: StepMoves,
    saga: SagaRun,
    spec: TemplateSpec,
    attempt: StepAttempt,
    report: StepReport,
    outcome: Outcome,
    *,
    worker: str,
    result: Any = None,
    error: str | None = None,
    retryable: bool = False,
    compensate_self: bool = False,
) -> None:
    """Close a fan-out's attempt on its verdict (its deadline is off) and settle the step."""
    attempt.outcome = outcome
    attempt.worker = worker[:255]
    attempt.error = error
    attempt.started_at = attempt.dispatched_at
    attempt.finished_at = moves.now
    moves.settle(
        saga,
        spec,
        report.step_index,
        Phase(report.phase),
        outcome,
        retryable=retryable,
        retry_after_ms=None,
        result=result,
        error=error,
        compensate_self=compensate_self,
    )
