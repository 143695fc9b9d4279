"""What a fan-out's list must be: a list the saga has. Anything else fails the step at once
(no retry could change the saga's data) instead of failing the transaction."""

from __future__ import annotations

from typing import Any

import pytest

from models.enums import Outcome, Phase, SagaState, StepState
from tests.unit.sagas.harness import Scenario, handler, template, work_item


def fan_out(kind: str, for_each: str) -> dict[str, Any]:
    if kind == "handler":
        return handler("fan", for_each=for_each)
    return work_item("fan", title="Review {each}", for_each=for_each)


@pytest.mark.parametrize("kind", ["handler", "work_item"])
@pytest.mark.parametrize(
    "for_each",
    [
        "{input.documents}",  # not in the input
        "{results.first.documents}",  # not in the earlier step's result
    ],
)
def test_a_list_missing_from_the_saga_fails_the_fan_out_at_once(kind: str, for_each: str) -> None:
    s = Scenario(template(handler("first"), fan_out(kind, for_each)), {"other": 1}).start()
    s.report(0, result={"other": 1})
    assert s.step_states() == [StepState.compensating, StepState.failed]
    attempt = s.latest(1)
    assert attempt.outcome is Outcome.failed and attempt.finished_at == s.now
    assert attempt.error is not None and "is not in the saga" in attempt.error
    assert s.saga.steps[1].attempts == 1  # not retried: the saga's data will not change
    assert s.moves()[-1] == ("first", "compensate", 1)
    s.succeed(0, phase=Phase.compensate)
    assert s.state() is SagaState.compensated
