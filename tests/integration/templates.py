"""Templates the integration tests register."""

from __future__ import annotations

from typing import Any

FAST_RETRY = {"max_attempts": 3, "initial_ms": 50, "max_ms": 200, "jitter": 0.0}

THREE_STEPS: dict[str, Any] = {
    "name": "it.three",
    "version": "1.0.0",
    "input_schema": {"type": "object", "required": ["tag"], "properties": {"tag": {"type": "string"}}},
    "steps": [
        {
            "name": "one",
            "capability": "alpha",
            "handler": "one",
            "compensate": "undo_one",
            "retry": FAST_RETRY,
            "compensate_retry": {**FAST_RETRY, "max_attempts": 4},
        },
        {
            "name": "two",
            "capability": "beta",
            "handler": "two",
            "compensate": "undo_two",
            "retry": FAST_RETRY,
            "compensate_retry": {**FAST_RETRY, "max_attempts": 4},
        },
        {"name": "three", "capability": "alpha", "handler": "three", "retry": FAST_RETRY},
    ],
}

LOCKED: dict[str, Any] = {
    "name": "it.locked",
    "version": "1.0.0",
    "steps": [
        {
            "name": "locked",
            "capability": "alpha",
            "handler": "locked",
            "mutex_scope": "acct:{input.account}",
            "retry": FAST_RETRY,
        },
    ],
}

# A handler that runs past its step's timeout: the task runner stops it, and the attempt is a
# retryable Timeout.
SLOW: dict[str, Any] = {
    "name": "it.slow",
    "version": "1.0.0",
    "steps": [
        {
            "name": "slow",
            "capability": "alpha",
            "handler": "slow",
            "timeout_ms": 300,
            "retry": {**FAST_RETRY, "max_attempts": 2},
        },
    ],
}

# A person approves between two automated steps.
APPROVAL: dict[str, Any] = {
    "name": "it.approval",
    "version": "1.0.0",
    "steps": [
        THREE_STEPS["steps"][0],
        {
            "name": "approve",
            "kind": "work_item",
            "work_item": {
                "type": "task",
                "title": "Approve order {input.tag}",
                "tenant": "acme",
                "offer": {"type": "human", "scope": "work:claim", "group": "approvers"},
                "payload": {"tag": "{input.tag}", "first": "{results.one}"},
            },
        },
        THREE_STEPS["steps"][2],
    ],
}

# An agent reviews; its lease is short so a silent agent loses the item quickly.
AGENT_REVIEW: dict[str, Any] = {
    "name": "it.agent_review",
    "version": "1.0.0",
    "steps": [
        {
            "name": "review",
            "kind": "work_item",
            "work_item": {
                "type": "task",
                "title": "Review {input.tag}",
                "tenant": "acme",
                "offer": {"type": "agent", "capability": "review"},
                "payload": {"tag": "{input.tag}"},
            },
        },
        THREE_STEPS["steps"][2],
    ],
}

# Undoing step two takes a person: "call the customer".
CALL_CUSTOMER: dict[str, Any] = {
    "name": "it.call_customer",
    "version": "1.0.0",
    "steps": [
        THREE_STEPS["steps"][0],
        {
            "name": "two",
            "capability": "beta",
            "handler": "two",
            "retry": FAST_RETRY,
            "compensate_work_item": {
                "type": "task",
                "title": "Call the customer about {input.tag}",
                "description": "Say sorry; the order is cancelled.",
                "tenant": "acme",
                "offer": {"type": "human", "group": "support"},
            },
        },
        THREE_STEPS["steps"][2],
    ],
}

# Nobody acts in time: the deadline cancels the item and the retry policy opens another.
DEADLINE: dict[str, Any] = {
    "name": "it.deadline",
    "version": "1.0.0",
    "steps": [
        {
            "name": "sign",
            "kind": "work_item",
            "timeout_ms": 1500,
            "retry": {"max_attempts": 2, "initial_ms": 0, "max_ms": 0, "jitter": 0.0},
            "work_item": {
                "type": "task",
                "title": "Sign {input.tag}",
                "description": "Sign the contract.",
                "tenant": "acme",
                "offer": {"type": "human", "group": "signers"},
            },
        },
    ],
}

# Nobody approves within the SLA: the breach cancels the item and the saga compensates.
LATE_APPROVAL: dict[str, Any] = {
    "name": "it.late_approval",
    "version": "1.0.0",
    "steps": [
        THREE_STEPS["steps"][0],
        {
            "name": "approve",
            "kind": "work_item",
            "work_item": {
                "type": "task",
                "title": "Approve {input.tag} quickly",
                "description": "Within a second, please.",
                "tenant": "acme",
                "offer": {"type": "human", "group": "approvers"},
                "sla": {"target_ms": 800, "breach_action": "cancel"},
            },
        },
    ],
}

# The whole saga must finish within 1.5 s; nobody signs, so it compensates.
SAGA_DEADLINE: dict[str, Any] = {
    "name": "it.saga_deadline",
    "version": "1.0.0",
    "deadline_ms": 1500,
    "steps": [THREE_STEPS["steps"][0], DEADLINE["steps"][0] | {"timeout_ms": None}],
}

# Twenty reviewers, one document each; the step is done when fifteen have reviewed.
FAN_OUT: dict[str, Any] = {
    "name": "it.fan_out",
    "version": "1.0.0",
    "steps": [
        THREE_STEPS["steps"][0],
        {
            "name": "review",
            "kind": "work_item",
            "for_each": "{input.documents}",
            "completion": {"policy": "at_least", "k": 15},
            "work_item": {
                "type": "task",
                "title": "Review {each} ({each_index})",
                "description": "One document of many.",
                "tenant": "acme",
                "offer": {"type": "agent", "capability": "review"},
                "payload": {"document": "{each}"},
            },
            "compensate_work_item": {
                "type": "task",
                "title": "Withdraw the review of {each}",
                "description": "The batch was abandoned.",
                "tenant": "acme",
                "offer": {"type": "agent", "capability": "review"},
            },
        },
        THREE_STEPS["steps"][2],
    ],
}

# Handlers fan out over a list: 7 of the members must succeed.
FAN_OUT_HANDLERS: dict[str, Any] = {
    "name": "it.fan_out_handlers",
    "version": "1.0.0",
    "steps": [
        THREE_STEPS["steps"][0],
        {
            "name": "fan",
            "capability": "beta",
            "handler": "fan_each",
            "compensate": "undo_fan_each",
            "for_each": "{input.items}",
            "completion": {"policy": "at_least", "k": 7},
            "retry": FAST_RETRY,
        },
        {"name": "three", "capability": "alpha", "handler": "three", "retry": FAST_RETRY},
    ],
}

# A saga whose first step waits on a work item offered to people: it is submitted, then waits.
REVIEW_STEP: dict[str, Any] = {
    "name": "review",
    "kind": "work_item",
    "work_item": {
        "type": "task",
        "title": "Review {input.tag}",
        "description": "Look at it.",
        "offer": {"type": "human", "scope": "work:claim"},
    },
}
REVIEW_FIRST: dict[str, Any] = {"name": "it.review_first", "version": "1.0.0", "steps": [REVIEW_STEP]}
