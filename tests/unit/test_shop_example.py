"""examples/shop.py is what people copy: its compensations must hold for a step whose outcome is
unknown (timed out or lost), which has no result to read."""

from __future__ import annotations

import pytest

from examples.shop import Order, charge_card, refund_card, release_stock, reserve_stock
from models.enums import Phase
from workers import StepContext

ORDER = Order(order_id="o-1", amount=12.5)


def context(step: str, phase: Phase, results: dict[str, object]) -> StepContext:
    key = f"saga-1:{step}" if phase is Phase.forward else f"saga-1:{step}:compensate"
    return StepContext(saga_id="saga-1", step=step, phase=phase, attempt=1, idempotence_key=key, results=results)


@pytest.mark.parametrize(
    ("forward", "undo", "step"),
    [(reserve_stock, release_stock, "reserve_stock"), (charge_card, refund_card, "charge_card")],
)
def test_a_compensation_undoes_the_same_effect_with_or_without_the_steps_result(
    forward: object, undo: object, step: str
) -> None:
    done = forward(context(step, Phase.forward, {}), ORDER)  # type: ignore[operator]
    field = next(iter(done.model_dump().keys()))
    known = undo(context(step, Phase.compensate, {step: done.model_dump()}), ORDER)  # type: ignore[operator]
    unknown = undo(context(step, Phase.compensate, {}), ORDER)  # type: ignore[operator]
    assert known.undone == unknown.undone == getattr(done, field)
