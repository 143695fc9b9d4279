"""Liveness boundaries, budget periods, and the settings that set them: pure rules, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from config.settings import Settings
from models.agents import AgentSpec
from orchestrator.agents.liveness import Thresholds, liveness
from orchestrator.agents.periods import period_start, spent_now

NOW = datetime(2030, 5, 15, 13, 45, 12, tzinfo=UTC)  # a Wednesday
T = Thresholds(stale_after_s=90, dead_after_s=600)


@pytest.mark.parametrize(
    ("ago_s", "expected"),
    [(0, "live"), (90, "live"), (90.001, "stale"), (600, "stale"), (600.001, "dead"), (86_400, "dead")],
)
def test_liveness_from_the_age_of_the_last_heartbeat(ago_s: float, expected: str) -> None:
    assert liveness(NOW - timedelta(seconds=ago_s), NOW, T) == expected


def test_an_agent_never_heard_from_is_dead() -> None:
    assert liveness(None, NOW, T) == "dead"


def test_the_defaults_outlast_a_default_leases_beats() -> None:
    settings = Settings()
    # A holder of a 60 s lease beats at least every 60 s: one late beat must not make it stale.
    assert settings.agent_stale_after_s > settings.work_lease_ttl_s
    assert Thresholds.of(settings) == Thresholds(stale_after_s=90, dead_after_s=600)
    with pytest.raises(ValidationError, match="AGENT_DEAD_AFTER_S must be longer"):
        Settings(agent_stale_after_s=600, agent_dead_after_s=600)


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("hour", datetime(2030, 5, 15, 13, tzinfo=UTC)),
        ("day", datetime(2030, 5, 15, tzinfo=UTC)),
        ("week", datetime(2030, 5, 13, tzinfo=UTC)),  # the Monday
        ("month", datetime(2030, 5, 1, tzinfo=UTC)),
    ],
)
def test_budget_periods_are_utc_calendar_periods(period: str, start: datetime) -> None:
    assert period_start(period, NOW) == start
    # The same moment seen from another zone (05:45 there) is in the same period.
    assert period_start(period, NOW.astimezone(timezone(timedelta(hours=-8)))) == start


def test_a_spend_counts_in_its_period_only() -> None:
    spec = AgentSpec.model_validate({"agent_type": "actuator", "budget": {"unit": "USD", "limit": 5, "period": "day"}})
    today = datetime(2030, 5, 15, tzinfo=UTC)
    assert spent_now(spec, 3.0, today, NOW) == 3.0
    assert spent_now(spec, 3.0, today - timedelta(days=1), NOW) == 0.0
    assert spent_now(spec, 3.0, None, NOW) == 0.0
    # Without a budget, spend is still counted by day.
    unlimited = AgentSpec.model_validate({"agent_type": "actuator"})
    assert spent_now(unlimited, 2.0, today, NOW) == 2.0
    assert spent_now(unlimited, 2.0, today, NOW + timedelta(days=1)) == 0
