"""Running a saga that failed again, from a step, optionally with its input patched.

A rerun continues the same saga run (its timeline keeps every earlier attempt). The steps before
the one named whose effect still stands (they succeeded and were not undone) keep their stored
results and are not run again; from the first step whose effect does not stand, every step runs
again, under idempotence keys of the rerun's own, so a worker does not answer with a result it
stored for the earlier run. (A step whose template sets its own key renders the same key if the
input it uses did not change: whatever honours that key, workyard's workers included, answers
with the earlier effect. The plan says which.) A dry run answers the plan and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from models.api import RerunStep
from models.enums import Outcome, Phase, SagaState, StepState, TimerKind
from models.keytemplate import render
from models.tables import SagaRun
from models.template import TemplateSpec
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.keys import step_values
from orchestrator.sagas.submit import check_input, check_key_templates

# What may be rerun: a saga that ended without completing.
RERUNNABLE = (SagaState.compensated, SagaState.compensation_failed, SagaState.cancelled, SagaState.terminated)


def merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` applied to ``target`` as a JSON merge patch (RFC 7386): objects merge key by
    key, a null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def plan(
    saga: SagaRun,
    spec: TemplateSpec,
    from_step: str | None,
    input_patch: dict[str, Any] | None,
    last_outcomes: Mapping[int, Outcome],
) -> tuple[int, dict[str, Any], list[RerunStep]]:
    """Where a rerun starts, the input it runs with, and what becomes of each step
    (``last_outcomes``: the outcome of each step's last forward attempt)."""
    if saga.state not in RERUNNABLE:
        raise Conflict(
            f"saga {saga.id} is {saga.state.value}: only a saga that ended without completing "
            f"({', '.join(s.value for s in RERUNNABLE)}) can be rerun"
        )
    names = [s.name for s in spec.steps]
    if from_step is None:
        asked = next((i for i, s in enumerate(saga.steps) if s.state is not StepState.succeeded), 0)
    elif from_step in names:
        asked = names.index(from_step)
    else:
        raise InvalidInput(
            f"saga {saga.id} has no step {from_step!r}; its steps: {', '.join(names)}",
            details=[{"path": "from_step", "message": f"one of {', '.join(names)}"}],
        )
    # A step before the one asked for whose effect does not stand runs again, and all after it.
    start = next((i for i in range(asked) if saga.steps[i].state is not StepState.succeeded), asked)
    new_input = merge_patch(saga.input, input_patch) if input_patch else saga.input
    # Refused now, dry run or not, as the rerun itself would refuse it.
    probe = SagaRun(id=saga.id, input=new_input)
    try:
        check_input(spec, new_input)
        check_key_templates(probe, spec)
    except InvalidInput as exc:
        raise InvalidInput(
            f"input_patch: {exc.message}", details=[{"path": "input_patch", "message": exc.message}]
        ) from exc
    steps = []
    for index, (step, step_spec) in enumerate(zip(saga.steps, spec.steps, strict=True)):
        if index < start:
            steps.append(RerunStep(name=step.name, runs=False, why="succeeded and was not undone: its result is kept"))
            continue
        may_stand = _may_stand(StepState(step.state), last_outcomes.get(index))
        if may_stand is not None:
            why = (
                f"runs again under its earlier idempotence keys: its earlier effect may stand ({may_stand}), so "
                "a worker that stored its result answers with it, and a service that honours the key does not "
                "repeat it"
            )
        else:
            before = {StepState.compensated: "its effect was undone", StepState.pending: "it never ran"}.get(
                StepState(step.state), "it failed"
            )
            why = f"runs again under new idempotence keys ({before})"
        if step_spec.kind == "handler" and step_spec.idempotence_key:
            old = render(step_spec.idempotence_key, step_values(saga, spec, step_spec))
            new = render(step_spec.idempotence_key, step_values(probe, spec, step_spec))
            if old == new:
                why += (
                    f"; its template's idempotence key {old!r} is the same as before: a worker that stored "
                    "the earlier result answers with it"
                )
        steps.append(RerunStep(name=step.name, runs=True, earlier_keys=may_stand is not None, why=why))
    return start, new_input, steps


# Outcomes after which a step may have done its work although no success was reported.
_UNKNOWN = (Outcome.timed_out, Outcome.lost, Outcome.cancelled)


def _may_stand(state: StepState, last: Outcome | None) -> str | None:
    """Why a step's earlier effect may stand; None: it is known not to (undone, never done)."""
    if state is StepState.compensation_failed:
        return "its undo gave up"
    if state is StepState.failed and last in _UNKNOWN:
        return f"its last attempt {last.value if last else 'ended'} with its outcome unknown"
    return None


def rerun(
    engine: SagaEngine,
    saga: SagaRun,
    spec: TemplateSpec,
    start: int,
    new_input: dict[str, Any],
    steps: list[RerunStep],
    actor: str,
    why: str,
) -> list[str]:
    """Run ``saga`` again from step ``start`` with ``new_input`` (checked as a submit's); the
    remediation items it has open are closed. Their ids."""
    saga.input = new_input  # checked by the plan
    closed = engine.store.close_remediations(saga, actor, why)
    saga.reruns = (saga.reruns or 0) + 1
    saga.state = SagaState.running
    saga.error = None
    saga.finished_at = None
    saga.cancelled_at = None
    saga.updated_at = engine.now
    saga.results = {k: v for k, v in saga.results.items() if k in {s.name for s in spec.steps[:start]}}
    for step, planned in zip(saga.steps[start:], steps[start:], strict=True):
        if not planned.earlier_keys:
            step.key_rerun = saga.reruns
        step.state = StepState.pending
        step.attempts = step.compensation_attempts = 0
        step.error = None
        step.started_at = step.finished_at = None
        # Numbered on from the step's earlier forward attempts (the timeline keeps them all).
        step.current_attempt = engine.store.last_attempt(saga.id, step.index, Phase.forward)
    if spec.deadline_ms is not None:
        # The template's deadline again, from the rerun (the earlier run's was dropped as it ended).
        engine.uow.arm_timer(
            f"{TimerKind.saga_deadline.value}:{saga.id}",
            TimerKind.saga_deadline,
            engine.now + timedelta(milliseconds=spec.deadline_ms),
            engine.now,
            saga_id=saga.id,
        )
    engine.dispatch_step(saga, spec, start)
    return closed
