"""The CLI's commands over the API start light: no database, broker or server library is loaded
to parse a command line, and the defaults it reads from the environment are the settings'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from orchestrator.cli import remote
from orchestrator.cli.base import Failure
from tests.support import ROOT

HEAVY = ("sqlalchemy", "celery", "kombu", "fastapi", "pydantic_settings", "models.tables", "orchestrator.service")


def test_the_cli_loads_no_heavy_library_to_start() -> None:
    probe = (
        "import sys; from orchestrator.cli.main import main\n"
        "try:\n    main(['saga', 'list', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def test_the_embedded_stacks_defaults_are_the_settings() -> None:
    fields = Settings.model_fields
    assert str(fields["data_dir"].default) == remote.DEFAULT_DATA_DIR
    assert fields["api_host"].default == remote.DEFAULT_API_HOST
    assert fields["api_port"].default == remote.DEFAULT_API_PORT


def test_the_data_dirs_admin_token_goes_to_the_embedded_stack_only(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("WORKYARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKYARD_TOKEN", raising=False)
    monkeypatch.delenv("WORKYARD_URL", raising=False)
    (tmp_path / "admin-token").write_text("wy_local_admin_secret")
    assert remote.connect(None, None).token == "wy_local_admin_secret"  # the embedded stack's API
    with pytest.raises(Failure, match="pass --token or set WORKYARD_TOKEN"):
        remote.connect("http://elsewhere.example:8700", None)
    assert remote.connect("http://elsewhere.example:8700", "wy_given").token == "wy_given"
