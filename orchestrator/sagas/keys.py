"""The names a saga derives for its steps: the values key templates see, idempotence keys,
task ids and timer keys. Stable, so a redelivery or a second orchestrator derives the same."""

from __future__ import annotations

from typing import Any

from models.enums import Phase, TimerKind
from models.keytemplate import render
from models.tables import SagaRun
from models.template import StepSpec, TemplateSpec


def step_values(saga: SagaRun, spec: TemplateSpec, step: StepSpec) -> dict[str, Any]:
    """What a key template such as ``order:{input.order_id}`` may refer to."""
    return {"input": saga.input, "saga_id": saga.id, "step": step.name, "template": spec.name, "version": spec.version}


def idempotence_key(saga: SagaRun, spec: TemplateSpec, step: StepSpec, phase: Phase, member: int | None = None) -> str:
    base = (
        render(step.idempotence_key, step_values(saga, spec, step))
        if step.idempotence_key
        else f"{saga.id}:{step.name}" + _rerun_suffix(saga, step)
    )
    if member is not None:
        base = f"{base}:{member}"  # each member of a fan-out has an effect of its own
    return base if phase is Phase.forward else f"{base}:compensate"


def _rerun_suffix(saga: SagaRun, step: StepSpec) -> str:
    """A step a rerun ran again where its earlier effect was known not to stand has keys of that
    rerun's own: the earlier run's stored results are not its."""
    if not saga.reruns:
        return ""
    run = next(s for s in saga.steps if s.name == step.name)
    return f":rerun{run.key_rerun}" if run.key_rerun else ""


def task_id(saga_id: str, index: int, phase: Phase, attempt_no: int, member: int | None) -> str:
    return f"{saga_id}-{index}-{phase.value[0]}{attempt_no}" + (f"-{member}" if member is not None else "")


def timer_key(kind: TimerKind, saga_id: str, index: int, phase: Phase | str, attempt_no: int) -> str:
    """Unique per thing scheduled: scheduling it twice keeps one timer, and cancelling finds it."""
    return f"{kind.value}:{saga_id}:{index}:{Phase(phase).value}:{attempt_no}"
