"""Work-item lifecycles as data: states, allowed transitions, terminal states, and what the
named actions (start, complete, fail, send back, close) mean in each.

A work item's lifecycle is chosen by its type and, where given, by its origin. The helpers at
the bottom answer the questions the API and the UI ask ("what may come next?") from the data
alone, so adding a lifecycle is adding an entry to ``LIFECYCLES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args


@dataclass(frozen=True)
class Lifecycle:
    """A work-item lifecycle as data: its statuses, the transitions between them, and what each named action does."""

    name: str
    initial: str
    transitions: Mapping[str, tuple[str, ...]]
    # Statuses in which the work is over: no queue shows the item and nobody can claim it.
    terminal: frozenset[str]
    # Statuses that count as "resolved" for an item that depends on this one.
    resolved: frozenset[str]
    # Terminal statuses in which the work was done (the others mean it was not): what a saga
    # waiting on the item resumes on.
    succeeded: frozenset[str] = frozenset()
    # Named actions: from-status -> to-status. Every pair must also be a transition.
    start: Mapping[str, str] = field(default_factory=dict)
    complete: Mapping[str, str] = field(default_factory=dict)
    fail: Mapping[str, str] = field(default_factory=dict)
    send_back: Mapping[str, str] = field(default_factory=dict)
    close: Mapping[str, str] = field(default_factory=dict)
    # The status that means "waiting on something" (where an SLA's pause parks an item): it may be
    # started again by hand, but it is not work to hand out; None: the lifecycle has none.
    paused: str | None = None
    # The terminal status a succeeded item moves to when its compensation plan has run (the spec's
    # done -> rolled_back); None: the lifecycle has none, and the item keeps its status.
    undone: str | None = None
    description: str = ""

    @property
    def statuses(self) -> tuple[str, ...]:
        seen: dict[str, None] = {self.initial: None}
        for source, targets in self.transitions.items():
            seen[source] = None
            seen.update(dict.fromkeys(targets))
        seen.update(dict.fromkeys(sorted(self.terminal)))
        return tuple(seen)

    @property
    def underway(self) -> frozenset[str]:
        """Statuses ``start`` leads to: work in progress, which a holder's successor resumes."""
        return frozenset(self.start.values())

    @property
    def actionable(self) -> frozenset[str]:
        """Statuses in which a claimer can go to work now: start it (unless it is paused, waiting
        on something), or resume it."""
        return (frozenset(self.start) - {self.paused}) | self.underway

    def check(self) -> None:
        """Every named action is an allowed transition; raises ValueError otherwise."""
        for action in ("start", "complete", "fail", "send_back", "close"):
            for source, target in getattr(self, action).items():
                if target not in self.transitions.get(source, ()):
                    raise ValueError(f"lifecycle {self.name}: {action} {source} -> {target} is not a transition")
        if self.undone is not None and self.undone not in self.terminal:
            raise ValueError(f"lifecycle {self.name}: undone status {self.undone} is not terminal")


def _cancel_from(statuses: tuple[str, ...], to: str) -> dict[str, str]:
    return dict.fromkeys(statuses, to)


# The work-items spec's canonical lifecycle: planned -> in_progress -> waiting -> review -> done |
# failed | rolled_back. "failed -> remediation" is an action (open a remediation item), not a status.
CANONICAL = Lifecycle(
    name="canonical",
    initial="planned",
    transitions={
        "planned": ("in_progress",),
        "in_progress": ("waiting", "review", "failed"),
        "waiting": ("in_progress",),
        "review": ("done", "failed"),
        "done": ("rolled_back",),
    },
    terminal=frozenset({"done", "failed", "rolled_back"}),
    resolved=frozenset({"done"}),
    succeeded=frozenset({"done"}),
    start={"planned": "in_progress", "waiting": "in_progress"},
    paused="waiting",
    complete={"in_progress": "review", "review": "done"},
    fail={"in_progress": "failed", "review": "failed"},
    undone="rolled_back",
    description="The work-items spec: planned, in_progress, waiting, review, done, failed, rolled_back.",
)

# The next-work doc's statuses. The doc gives no transition table; this one lets work be
# started, blocked and unblocked, handed to review, sent back, and cancelled while still open.
# Done work whose compensation plan ran is rolled_back (the spec's task items carry a plan); only
# the plan's run moves it there, not a transition by hand.
WORK = Lifecycle(
    name="work",
    initial="todo",
    transitions={
        "todo": ("in_progress", "blocked", "cancelled"),
        "in_progress": ("blocked", "review", "done", "cancelled"),
        "blocked": ("todo", "in_progress", "cancelled"),
        "review": ("done", "in_progress", "cancelled"),
    },
    terminal=frozenset({"done", "cancelled", "rolled_back"}),
    resolved=frozenset({"done", "cancelled"}),
    succeeded=frozenset({"done"}),
    start={"todo": "in_progress", "blocked": "in_progress"},
    paused="blocked",
    complete={"in_progress": "review", "review": "done"},
    fail={"todo": "cancelled", "in_progress": "cancelled", "blocked": "cancelled", "review": "cancelled"},
    send_back={"review": "in_progress"},
    close=_cancel_from(("todo", "in_progress", "blocked", "review"), "cancelled"),
    undone="rolled_back",
    description="The next-work doc: todo, in_progress, blocked, review, done, cancelled (and rolled_back).",
)

# The task-workflow doc, origin "backlog": finished work waits for the user's review, who
# completes it, closes it, or sends it back to the queue for rework.
BACKLOG = Lifecycle(
    name="backlog",
    initial="backlog",
    transitions={
        "backlog": ("queued",),
        "queued": ("pending",),
        "pending": ("in_progress",),
        "in_progress": ("pending_user_review",),
        "pending_user_review": ("completed", "closed", "queued"),
    },
    terminal=frozenset({"completed", "closed"}),
    resolved=frozenset({"completed", "closed"}),
    succeeded=frozenset({"completed"}),
    start={"pending": "in_progress"},
    complete={"in_progress": "pending_user_review", "pending_user_review": "completed"},
    fail={"pending_user_review": "closed"},
    send_back={"pending_user_review": "queued"},
    close={"pending_user_review": "closed"},
    description="The task-workflow doc, origin backlog.",
)

# The task-workflow doc, origin "chat": straight through, no review.
CHAT = Lifecycle(
    name="chat",
    initial="queued",
    transitions={"queued": ("pending",), "pending": ("in_progress",), "in_progress": ("completed",)},
    terminal=frozenset({"completed"}),
    resolved=frozenset({"completed"}),
    succeeded=frozenset({"completed"}),
    start={"pending": "in_progress"},
    complete={"in_progress": "completed"},
    description="The task-workflow doc, origin chat.",
)

# Items a saga step waits on: done resumes the saga; failed (rejected) or cancelled fails the
# step. An approver may complete or reject straight from todo, without starting first. An SLA
# that pauses the item parks it in blocked until someone moves it back.
STEP = Lifecycle(
    name="step",
    initial="todo",
    transitions={
        "todo": ("in_progress", "blocked", "done", "failed", "cancelled"),
        "in_progress": ("todo", "blocked", "done", "failed", "cancelled"),
        "blocked": ("todo", "in_progress", "failed", "cancelled"),
    },
    terminal=frozenset({"done", "failed", "cancelled"}),
    resolved=frozenset({"done", "cancelled"}),
    succeeded=frozenset({"done"}),
    start={"todo": "in_progress"},
    paused="blocked",
    complete={"todo": "done", "in_progress": "done"},
    fail={"todo": "failed", "in_progress": "failed", "blocked": "failed"},
    send_back={"in_progress": "todo"},
    close={"todo": "cancelled", "in_progress": "cancelled", "blocked": "cancelled"},
    description="Items a saga waits on: todo, in_progress, blocked, done, failed, cancelled.",
)

LIFECYCLES: dict[str, Lifecycle] = {lc.name: lc for lc in (CANONICAL, WORK, BACKLOG, CHAT, STEP)}
# An item's origin, where it has one, picks its lifecycle over its type's.
ORIGINS: dict[str, str] = {"backlog": "backlog", "chat": "chat", "saga": "step"}
for _lifecycle in LIFECYCLES.values():
    _lifecycle.check()

# The lifecycles a work-item type may name: every one but "step", which is for the items sagas open
# (chosen by their origin). A Literal, so the OpenAPI lists them; LIFECYCLES is fixed at import.
TypeLifecycle = Literal["canonical", "work", "backlog", "chat"]
TYPE_LIFECYCLES: tuple[str, ...] = get_args(TypeLifecycle)
if set(TYPE_LIFECYCLES) != set(LIFECYCLES) - {"step"}:
    raise RuntimeError("TypeLifecycle must name every lifecycle a type may choose")

# Every lifecycle's name, as a filter takes it (a Literal, so the OpenAPI lists them).
LifecycleName = Literal["canonical", "work", "backlog", "chat", "step"]
if set(get_args(LifecycleName)) != set(LIFECYCLES):
    raise RuntimeError("LifecycleName must name every lifecycle")

# Every status any lifecycle counts as resolved: a dependency in one of them no longer blocks.
RESOLVED_STATUSES = frozenset().union(*(lc.resolved for lc in LIFECYCLES.values()))


def lifecycle_for(default: str, origin: str | None) -> Lifecycle:
    """The lifecycle of an item: its origin's when it has one, else its type's default."""
    if origin is not None:
        return LIFECYCLES[ORIGINS[origin]]
    return LIFECYCLES[default]


def next_statuses(lifecycle: Lifecycle, status: str) -> list[str]:
    return list(lifecycle.transitions.get(status, ()))


def is_valid_transition(lifecycle: Lifecycle, from_status: str, to_status: str) -> bool:
    return to_status in lifecycle.transitions.get(from_status, ())


def completion_status(lifecycle: Lifecycle, status: str) -> str | None:
    """Where "complete" takes an item from ``status``; None when it cannot be completed there."""
    return lifecycle.complete.get(status)


def can_complete(lifecycle: Lifecycle, status: str) -> bool:
    return status in lifecycle.complete


def can_close(lifecycle: Lifecycle, status: str) -> bool:
    return status in lifecycle.close


def can_send_back(lifecycle: Lifecycle, status: str) -> bool:
    return status in lifecycle.send_back


def is_terminal(lifecycle: Lifecycle, status: str) -> bool:
    return status in lifecycle.terminal
