"""Budget periods: an agent's spend counts within the current period of its budget, and a new
period starts from nothing.

Periods are calendar periods in UTC (the hour, the day, the ISO week from Monday, the month), so
every orchestrator process puts a moment in the same period, whatever its clock zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.agents import AgentSpec

# What an agent without a budget spends is still counted, by day: the registry shows it.
DEFAULT_PERIOD = "day"


def period_start(period: str, now: datetime) -> datetime:
    """The start of the ``period`` (hour, day, week, month) that holds ``now``."""
    moment = now.astimezone(UTC)
    hour = moment.replace(minute=0, second=0, microsecond=0)
    if period == "hour":
        return hour
    day = hour.replace(hour=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def spec_period(spec: AgentSpec) -> str:
    return spec.budget.period if spec.budget is not None else DEFAULT_PERIOD


def is_current(spec: AgentSpec, started: datetime | None, now: datetime) -> bool:
    """Whether a spend counted since ``started`` is of the budget's period that holds ``now``."""
    return started is not None and started >= period_start(spec_period(spec), now)


def spent_now(spec: AgentSpec, spent: float, started: datetime | None, now: datetime) -> float:
    """What was spent in the current period: ``spent`` counted since ``started``; 0 if that was an
    earlier period (the budget rolled over since the last spend)."""
    return spent if is_current(spec, started, now) else 0.0
