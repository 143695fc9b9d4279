"""Lifecycles as data: the helpers answer from the tables, and the tables hang together."""

from __future__ import annotations

import pytest

from models.lifecycles import (
    BACKLOG,
    CANONICAL,
    CHAT,
    LIFECYCLES,
    WORK,
    Lifecycle,
    can_close,
    can_complete,
    can_send_back,
    completion_status,
    is_valid_transition,
    lifecycle_for,
    next_statuses,
)


def test_the_task_workflow_docs_backlog_machine() -> None:
    assert BACKLOG.initial == "backlog"
    assert next_statuses(BACKLOG, "pending_user_review") == ["completed", "closed", "queued"]
    assert is_valid_transition(BACKLOG, "in_progress", "pending_user_review")
    assert not is_valid_transition(BACKLOG, "in_progress", "completed")
    # Backlog work finishes into the user's review; chat work completes straight away.
    assert completion_status(BACKLOG, "in_progress") == "pending_user_review"
    assert completion_status(CHAT, "in_progress") == "completed"
    assert can_close(BACKLOG, "pending_user_review") and not can_close(CHAT, "in_progress")
    assert can_send_back(BACKLOG, "pending_user_review") and not can_send_back(BACKLOG, "in_progress")
    assert can_complete(CHAT, "in_progress") and not can_complete(CHAT, "queued")
    assert BACKLOG.terminal == {"completed", "closed"} and CHAT.terminal == {"completed"}


def test_the_specs_canonical_machine() -> None:
    assert CANONICAL.initial == "planned"
    assert next_statuses(CANONICAL, "in_progress") == ["waiting", "review", "failed"]
    assert is_valid_transition(CANONICAL, "done", "rolled_back")
    assert not is_valid_transition(CANONICAL, "planned", "done")
    assert set(CANONICAL.statuses) == {"planned", "in_progress", "waiting", "review", "done", "failed", "rolled_back"}


def test_the_next_work_docs_statuses() -> None:
    assert set(WORK.statuses) == {"todo", "in_progress", "blocked", "review", "done", "cancelled", "rolled_back"}
    assert WORK.resolved == {"done", "cancelled"}
    # rolled_back is reached only by a compensation plan's run, never by hand.
    assert WORK.undone == "rolled_back" and next_statuses(WORK, "done") == []


@pytest.mark.parametrize("lifecycle", list(LIFECYCLES.values()), ids=list(LIFECYCLES))
def test_terminal_statuses_lead_nowhere_but_listed_exits(lifecycle: Lifecycle) -> None:
    for status in lifecycle.terminal:
        # Only the spec's done -> rolled_back leaves a terminal status.
        allowed = set(next_statuses(lifecycle, status))
        assert allowed <= ({"rolled_back"} if (lifecycle, status) == (CANONICAL, "done") else set())
    assert lifecycle.initial not in lifecycle.terminal


def test_origin_picks_the_lifecycle_over_the_type() -> None:
    assert lifecycle_for("work", None) is WORK
    assert lifecycle_for("work", "backlog") is BACKLOG
    assert lifecycle_for("canonical", "chat") is CHAT


def test_a_named_action_that_is_no_transition_is_refused() -> None:
    broken = Lifecycle(
        name="broken",
        initial="a",
        transitions={"a": ("b",)},
        terminal=frozenset({"b"}),
        resolved=frozenset({"b"}),
        complete={"a": "c"},
    )
    with pytest.raises(ValueError, match="complete a -> c is not a transition"):
        broken.check()
