"""Dependencies: the process's wiring, its sessions and its dispatcher."""

from __future__ import annotations

from fastapi import Request

from orchestrator.wiring import Wiring


def get_wiring(request: Request) -> Wiring:
    wiring: Wiring = request.app.state.wiring
    return wiring
