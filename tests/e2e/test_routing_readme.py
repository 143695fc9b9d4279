"""The README's routing example runs as written against `workyard up`: an agent, a rule, an item
the rule gives to the agent, its decision, a reroute, and the rule's versions."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import readme_block, run_readme_block, stack_env, workyard

__all__ = ["stack_env"]  # the stack this module runs against (a fixture of its own here)


def test_the_readmes_routing_example_runs_as_written(stack_env: dict[str, str], tmp_path: Path) -> None:
    # The groups the rule escalates and falls back to are groups some token is in.
    made = workyard(
        stack_env,
        *("token", "create", "--principal", "user:lead", "--tenant", "acme", "--scope", "work:claim"),
        *("--group", "leads", "--group", "dbas"),
    )
    assert made.returncode == 0, made.stderr
    block = readme_block("<!-- routing:")
    for run in range(2):  # as written, and again: registering the same agent and rule is a no-op
        ran = run_readme_block(block, stack_env, tmp_path)
        assert ran.returncode == 0, f"run {run}: {ran.stdout}\n{ran.stderr}"
        assert "{'type': 'agent', 'id': 'pg-1'}" in ran.stdout
        # curl prints the answers one after another: the decisions are the list that starts here.
        decisions, _ = json.JSONDecoder().raw_decode(ran.stdout[ran.stdout.index('[{"id":') :])
        assert decisions[0]["chosenAssignee"] == "agent:pg-1" and decisions[0]["ruleId"] == "route-001"
