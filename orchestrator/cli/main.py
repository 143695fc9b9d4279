"""The ``workyard`` command: the root group with every noun's commands registered on it."""

from __future__ import annotations

from orchestrator.cli import (
    dead_letters,
    demo,
    item_templates,
    items,
    mcp,
    ops,
    pauses,
    sagas,
    stack,
    templates,
    tokens,
    webhooks,
)
from orchestrator.cli.base import main

# Importing a noun's module registers its commands on ``main``.
NOUNS = (stack, sagas, templates, pauses, item_templates, items, dead_letters, webhooks, tokens, ops, demo, mcp)

__all__ = ["main"]
