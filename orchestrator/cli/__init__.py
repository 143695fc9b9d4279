"""The ``workyard`` command."""

from __future__ import annotations

from orchestrator.cli.main import main

__all__ = ["main"]
