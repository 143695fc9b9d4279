"""Step kinds: a handler, a fan-out of handlers, a work item (or a fan-out of them)."""

from __future__ import annotations

from models.enums import Phase
from models.template import StepSpec
from orchestrator.sagas.steps.handler import HandlerStep
from orchestrator.sagas.steps.handler_fan_out import HandlerFanOut
from orchestrator.sagas.steps.kind import StepKind
from orchestrator.sagas.steps.work_item import WorkItemStep

HANDLER, HANDLER_FAN_OUT, WORK_ITEM = HandlerStep(), HandlerFanOut(), WorkItemStep()


def kind_of(step: StepSpec, phase: Phase) -> StepKind:
    """The kind of one phase of a step: a compensation may be a handler where the step was a
    work item, and the other way round."""
    if step.item_for(phase.value) is not None:
        return WORK_ITEM
    if step.for_each is not None:
        return HANDLER_FAN_OUT
    return HANDLER
