"""``python -m orchestrator.cli``."""

from __future__ import annotations

from orchestrator.cli.main import main

main()
