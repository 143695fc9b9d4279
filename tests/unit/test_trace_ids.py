"""The spec's deterministic action and artifact ids (§13.2): spelled from their parts, the same
parts giving the same id."""

from __future__ import annotations

import hashlib
import re

from models.work_tables import TRACED_EVENTS_PREDICATE
from orchestrator.traceability.actions import TRACED
from orchestrator.traceability.ids import action_id, artifact_id

ITEM = "WI-FINSERV-CHANGE-20251030-A3F9B2C4D5"


def test_an_action_id_is_its_item_agent_and_sequence() -> None:
    assert action_id(ITEM, "agent-01", 1) == f"ACT-{ITEM}-agent-01-001"
    assert action_id(ITEM, "agent-01", 42) == action_id(ITEM, "agent-01", 42) == f"ACT-{ITEM}-agent-01-042"
    # Past 999 the sequence just grows a digit: the id stays unique.
    assert action_id(ITEM, "agent-01", 1000).endswith("-agent-01-1000")


def test_an_artifact_id_is_its_action_type_and_content_hash() -> None:
    action = action_id(ITEM, "agent-01", 1)
    digest = hashlib.sha256(b"the log").hexdigest()
    assert artifact_id(action, "log", digest) == f"ART-{action}-log-{digest[:6].upper()}"
    assert artifact_id(action, "log", digest) == artifact_id(action, "log", hashlib.sha256(b"the log").hexdigest())
    assert artifact_id(action, "log", digest) != artifact_id(action, "log", hashlib.sha256(b"another").hexdigest())


def test_the_audit_index_of_traceability_holds_every_action_the_validation_reads_by_tenant() -> None:
    # A partial index that missed one would leave its check reading every tenant's audit trail.
    assert set(re.findall(r"'(\w+)'", TRACED_EVENTS_PREDICATE)) == TRACED | {"gate_passed"}
