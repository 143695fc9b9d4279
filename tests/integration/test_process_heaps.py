"""workyard's long-running processes keep what they started with out of the garbage collector's
sight (config.heap): a full collection that walked it stalled every claim in flight for about
80 ms. The worker's pool processes: tests/integration/test_sagas.py."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import heap
from orchestrator.api.app import create_app
from tests.integration.harness import stack_settings
from tests.support import ROOT, RedisTarget

# Python's own thresholds, as a process starts with them.
DEFAULT_THRESHOLDS = (700, 10, 10)


@pytest.fixture
def fresh_collector() -> Iterator[None]:
    """This test process's collector as a new process has it: nothing frozen, the default thresholds."""
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_api_settles_its_heap_before_it_serves(
    fresh_collector: None, tmp_path: Path, redis_target: RedisTarget
) -> None:
    settings = stack_settings(tmp_path, f"sqlite:///{tmp_path / 'workyard.db'}", redis_target)
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == heap.BATCH_THRESHOLDS


def test_the_orchestrator_settles_its_heap_before_it_runs(tmp_path: Path) -> None:
    # `workyard orchestrator` as its process runs it, up to the loops (which would run until stopped).
    probe = (
        "import gc\n"
        "import orchestrator.service.loops as loops\n"
        "loops.run_orchestrator = lambda wiring: print(gc.get_freeze_count(), gc.get_threshold())\n"
        "from orchestrator.cli.main import main\n"
        "main(['db', 'upgrade'], standalone_mode=False)\n"
        "main(['orchestrator'], standalone_mode=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env["WORKYARD_DATA_DIR"] = str(tmp_path)
    ran = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    frozen, thresholds = ran.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(frozen) > 10_000
    # Python's own: the orchestrator runs no batch submits (config.heap).
    assert thresholds == str(DEFAULT_THRESHOLDS)
