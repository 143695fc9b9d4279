"""Every kind of durable timer has exactly one handler: the saga's table or the work items'."""

from __future__ import annotations

import pytest

from models.enums import TimerKind
from models.tables import Timer
from orchestrator.sagas.engine import SAGA_TIMERS
from orchestrator.service.timers import ITEM_TIMERS
from tests.unit.sagas.harness import T0, Scenario, handler, template


def test_saga_and_item_timer_tables_cover_every_kind_exactly_once() -> None:
    assert set(SAGA_TIMERS).isdisjoint(ITEM_TIMERS)
    assert set(SAGA_TIMERS) | set(ITEM_TIMERS) == set(TimerKind)
    assert len(SAGA_TIMERS) + len(ITEM_TIMERS) == len(TimerKind)


@pytest.mark.parametrize("kind", sorted(SAGA_TIMERS))
def test_no_saga_timer_fires_on_a_finished_saga(kind: TimerKind) -> None:
    sla = {
        "target_ms": 500,
        "warn_at_pct": 50,
        "breach_action": "open-remediation",
        "escalation": [{"after_ms": 600, "action": "notify"}],
    }
    s = Scenario(template(handler("a"), deadline_ms=1000, sla=sla)).start()
    s.succeed(0)
    before = (list(s.sent), list(s.store.events), list(s.saga.sla_events))
    payload = {"index": 0, "phase": "forward", "attempt": 2, "step": 0}
    s.fire_timer(Timer(key=f"{kind.value}:stale", kind=kind, saga_id="s-1", payload=payload, due_at=T0))
    assert (s.sent, s.store.events, s.saga.sla_events) == before
