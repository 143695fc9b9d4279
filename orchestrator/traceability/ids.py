"""The spec's deterministic ids (§13.2) of agent actions and artifacts. The same inputs give the
same id: an action's is its item, its agent and its place among that agent's actions on the item;
an artifact's is its action, its type and the digest of its content."""

from __future__ import annotations

import hashlib

ARTIFACT_HASH_CHARS = 6


def action_id(item_id: str, agent_id: str, sequence: int) -> str:
    """``ACT-{workItemId}-{agentId}-{sequence:03d}`` (sequence from 1; past 999 it just grows)."""
    return f"ACT-{item_id}-{agent_id}-{sequence:03d}"


def artifact_hash(sha256_hex: str) -> str:
    """The first six hex digits, upper case, of the SHA-256 of the artifact's content. The content's
    digest (64 hex digits) stands for it: the content itself is not always at hand (an output
    is known by its digest once the item has moved on)."""
    return sha256_hex[:ARTIFACT_HASH_CHARS].upper()


def artifact_id(action: str, artifact_type: str, sha256_hex: str) -> str:
    """``ART-{actionId}-{artifactType}-{hash}``."""
    return f"ART-{action}-{artifact_type}-{artifact_hash(sha256_hex)}"


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
