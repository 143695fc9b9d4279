"""The next-work doc's four rules, its dependency table and its tie-breaks, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from models.work_tables import WorkItem
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Board:
    """Creates items as a reporter and bends their status and age directly, as the doc's
    scenarios need."""

    def __init__(self, client: TestClient, headers: Headers):
        self.client = client
        self.headers = headers
        self.clock = 0

    def add(
        self,
        type: str,
        *,
        assignee: str | None = "user:me",
        reporter: str | None = None,
        status: str | None = None,
        parent: str | None = None,
        deps: list[str] | None = None,
        age: int | None = None,
    ) -> str:
        body: dict[str, Any] = {"type": type, "title": f"{type} {self.clock}", "description": "x"}
        if assignee:
            kind, ident = assignee.split(":")
            body["assignee"] = {"type": kind, "id": ident}
        if reporter:
            kind, ident = reporter.split(":")
            body["reporter"] = {"type": kind, "id": ident}
        if parent:
            body["parent_id"] = parent
        if deps:
            body["dependencies"] = deps
        response = self.client.post("/api/v1/work-items", json=body, headers=self.headers)
        assert response.status_code == 201, response.json()
        item_id = str(response.json()["id"])
        self.clock += 1
        # Later calls are younger unless an age says otherwise (minutes after T0).
        self.set(item_id, created_at=T0 + timedelta(minutes=self.clock if age is None else age))
        if status:
            self.set(item_id, status=status, is_open=status not in ("done", "cancelled"))
        return item_id

    def set(self, item_id: str, **values: Any) -> None:
        with sessions(self.client).begin() as session:
            session.execute(update(WorkItem).where(WorkItem.id == item_id).values(**values))

    def delete(self, item_id: str) -> None:
        assert self.client.delete(f"/api/v1/work-items/{item_id}", headers=self.headers).status_code == 204


@pytest.fixture
def me(token: TokenFactory) -> Headers:
    return token("user:me")


@pytest.fixture
def board(client: TestClient, token: TokenFactory) -> Board:
    return Board(client, token("user:pm", scopes=["work:read", "work:write"]))


def next_for(client: TestClient, headers: Headers, who: str = "user:me") -> tuple[str | None, dict[str, Any]]:
    kind, ident = who.split(":")
    response = client.get(
        "/api/v1/works/next-work", params={"assigneeType": kind, "assigneeId": ident}, headers=headers
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    return (body["work"]["id"] if body["work"] else None), body["metadata"]


def test_nothing_to_do(client: TestClient, me: Headers) -> None:
    assert next_for(client, me) == (
        None,
        {"priorityLevel": 0, "priorityDescription": "No work available", "matchedCriteria": []},
    )


def test_rule_1_assigned_subtask_in_todo_comes_first(client: TestClient, me: Headers, board: Board) -> None:
    blocked_report = board.add("task", assignee=None, reporter="user:me", status="blocked", age=0)
    parent = board.add("task", assignee="user:someone")
    board.add("task")  # rule 2 candidate, older than the subtask
    subtask = board.add("subtask", parent=parent)
    assert blocked_report
    assert next_for(client, me) == (
        subtask,
        {
            "priorityLevel": 1,
            "priorityDescription": "Assigned subtask in todo status",
            "matchedCriteria": ["assigned_to_me", "subtask", "status_todo", "dependencies_met"],
        },
    )


def test_rule_1_is_fifo_with_a_stable_tie_break(client: TestClient, me: Headers, board: Board) -> None:
    parent = board.add("task", assignee=None)
    young = board.add("subtask", parent=parent, age=50)
    old_a = board.add("subtask", parent=parent, age=10)
    old_b = board.add("subtask", parent=parent, age=10)
    assert young
    # Same created_at: the lower id wins, every time.
    assert next_for(client, me)[0] == min(old_a, old_b)


def test_rule_2_task_without_subtasks(client: TestClient, me: Headers, board: Board) -> None:
    with_subtasks = board.add("task", age=1)
    board.add("subtask", parent=with_subtasks, assignee="user:other")
    plain = board.add("task", age=2)
    assert next_for(client, me) == (
        plain,
        {
            "priorityLevel": 2,
            "priorityDescription": "Assigned task without subtasks in todo status",
            "matchedCriteria": ["assigned_to_me", "task", "status_todo", "no_subtasks", "dependencies_met"],
        },
    )


def test_rule_2_ignores_deleted_subtasks(client: TestClient, me: Headers, board: Board) -> None:
    task_id = board.add("task")
    board.delete(board.add("subtask", parent=task_id, assignee="user:other"))
    assert next_for(client, me)[0] == task_id


def test_rules_3_and_4_reported_blocked_then_review(client: TestClient, me: Headers, board: Board) -> None:
    review = board.add("subtask", parent=board.add("task", assignee=None), assignee=None, status="review", age=1)
    review_task = board.add("task", assignee=None, reporter="user:me", status="review", age=0)
    board.add("epic", assignee=None, reporter="user:me", status="blocked", age=0)  # epics never count
    assert review  # reported by user:pm, not by me
    assert next_for(client, me) == (
        review_task,
        {
            "priorityLevel": 4,
            "priorityDescription": "Reported work in review status awaiting approval",
            "matchedCriteria": ["reported_by_me", "status_review"],
        },
    )
    blocked = board.add("task", assignee=None, reporter="user:me", status="blocked", age=99)
    assert next_for(client, me) == (
        blocked,
        {
            "priorityLevel": 3,
            "priorityDescription": "Reported work in blocked status requiring resolution",
            "matchedCriteria": ["reported_by_me", "status_blocked"],
        },
    )


def test_only_todo_counts_for_assigned_work(client: TestClient, me: Headers, board: Board) -> None:
    for status in ("in_progress", "blocked", "review", "done", "cancelled"):
        board.add("task", status=status)
    assert next_for(client, me)[0] is None


@pytest.mark.parametrize(
    ("dependency_status", "deleted", "ready"),
    [
        ("done", False, True),
        ("cancelled", False, True),
        ("todo", False, False),
        ("in_progress", False, False),
        ("review", False, False),
        ("blocked", False, False),
        ("done", True, False),  # a dependency that no longer exists blocks
    ],
)
def test_the_dependency_table_for_rules_1_and_2(
    client: TestClient, me: Headers, board: Board, dependency_status: str, deleted: bool, ready: bool
) -> None:
    dependency = board.add("task", assignee=None, status=dependency_status)
    parent = board.add("task", assignee=None)
    subtask = board.add("subtask", parent=parent, deps=[dependency])
    task_id = board.add("task", deps=[dependency])
    if deleted:
        board.delete(dependency)
    assert next_for(client, me)[0] == (subtask if ready else None)
    board.delete(subtask)
    assert next_for(client, me)[0] == (task_id if ready else None)


def test_an_unready_oldest_candidate_does_not_hide_a_ready_younger_one(
    client: TestClient, me: Headers, board: Board
) -> None:
    pending = board.add("task", assignee=None)
    board.add("task", deps=[pending], age=1)
    ready = board.add("task", age=2)
    assert next_for(client, me)[0] == ready


@pytest.mark.parametrize("status", ["blocked", "review"])
def test_rules_3_and_4_do_not_check_dependencies(client: TestClient, me: Headers, board: Board, status: str) -> None:
    pending = board.add("task", assignee=None)
    reported = board.add("task", assignee=None, reporter="user:me", status=status, deps=[pending])
    assert next_for(client, me)[0] == reported


def test_users_and_agents_with_the_same_id_are_different_assignees(
    client: TestClient, token: TokenFactory, board: Board
) -> None:
    agent = token("agent:me")
    for_agent = board.add("task", assignee="agent:me")
    assert next_for(client, agent, "agent:me")[0] == for_agent
    assert next_for(client, token("user:me"))[0] is None


def test_deleted_and_other_tenants_items_are_never_next(client: TestClient, token: TokenFactory, board: Board) -> None:
    board.delete(board.add("task"))
    elsewhere = Board(client, token("user:pm", tenant="globex"))
    elsewhere.add("task")
    assert next_for(client, token("user:me"))[0] is None
    assert next_for(client, token("user:me", tenant="globex"))[0] is not None


def test_asking_for_someone_else_needs_supervise(client: TestClient, token: TokenFactory, board: Board) -> None:
    item = board.add("task")
    nosy = client.get(
        "/api/v1/works/next-work", params={"assigneeType": "user", "assigneeId": "me"}, headers=token("user:nosy")
    )
    assert nosy.status_code == 403 and "work:supervise" in error(nosy)["message"]
    lead = token("user:lead", scopes=["work:read", "work:supervise"])
    assert next_for(client, lead)[0] == item


def test_bad_assignee_type_is_a_clear_422(client: TestClient, me: Headers) -> None:
    response = client.get("/api/v1/works/next-work", params={"assigneeType": "robot", "assigneeId": "x"}, headers=me)
    assert response.status_code == 422
    assert error(response)["details"][0]["path"] == "query.assigneeType"
