"""The shop demo: reserve stock, charge the card, ship; refund and release on failure.

``fail_at`` (a step name) makes that step fail for good; ``delay_ms`` makes every step take that
long, which leaves time to kill a worker or watch Flower.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from workers import StepContext, StepFailed, step


class Order(BaseModel):
    """The shop saga's input, and the command of each step and compensation: the order to reserve, charge and ship."""

    order_id: str
    amount: float
    fail_at: str | None = None
    delay_ms: int = 0


class StockReserved(BaseModel):
    """What reserve_stock returns: the reservation that release_stock gives back."""

    reservation_id: str


class CardCharged(BaseModel):
    """What charge_card returns: the charge that refund_card refunds."""

    charge_id: str
    amount: float


class Shipped(BaseModel):
    """What ship returns: the parcel's tracking id."""

    tracking_id: str


class Undone(BaseModel):
    """What a compensation returns: the id of the reservation or charge it undid."""

    undone: str


def _work(ctx: StepContext, order: Order) -> None:
    if order.delay_ms:
        time.sleep(order.delay_ms / 1000)
    if order.fail_at == ctx.step and ctx.phase == "forward":
        raise StepFailed(f"{ctx.step} failed for order {order.order_id} (fail_at)", retryable=False)


@step("reserve_stock", capability="inventory")
def reserve_stock(ctx: StepContext, order: Order) -> StockReserved:
    _work(ctx, order)
    # A real inventory service would take ctx.idempotence_key, so a repeat reserves nothing twice.
    return StockReserved(reservation_id=f"res-{ctx.idempotence_key}")


def _forward_key(ctx: StepContext) -> str:
    """The idempotence key the compensated step ran under: a compensation's key is its own plus
    ``:compensate``."""
    return ctx.idempotence_key.removesuffix(":compensate")


# A compensation may run for a step whose outcome is unknown: it timed out or its worker was lost,
# so it may or may not have done its work, and ctx.results has nothing for it. A compensation
# therefore never relies on the result being there: it undoes whatever the step did under its
# idempotence key, and undoing nothing is a success.
@step("release_stock", capability="inventory")
def release_stock(ctx: StepContext, order: Order) -> Undone:
    _work(ctx, order)
    reserved = ctx.results.get("reserve_stock")
    # A real inventory service would release "the reservation made under this key, if any".
    return Undone(undone=reserved["reservation_id"] if reserved else f"res-{_forward_key(ctx)}")


@step("charge_card", capability="payments")
def charge_card(ctx: StepContext, order: Order) -> CardCharged:
    _work(ctx, order)
    return CardCharged(charge_id=f"ch-{ctx.idempotence_key}", amount=order.amount)


@step("refund_card", capability="payments")
def refund_card(ctx: StepContext, order: Order) -> Undone:
    _work(ctx, order)
    charged = ctx.results.get("charge_card")
    # A real payment provider would refund "the charge made under this key, if any".
    return Undone(undone=charged["charge_id"] if charged else f"ch-{_forward_key(ctx)}")


@step("ship", capability="shipping")
def ship(ctx: StepContext, order: Order) -> Shipped:
    _work(ctx, order)
    return Shipped(tracking_id=f"trk-{order.order_id}")
