"""Dependencies: the process's wiring, its sessions and its dispatcher."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from sqlalchemy.orm import Session

from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)


def get_wiring(request: Request) -> Wiring:
    wiring: Wiring = request.app.state.wiring
    return wiring


@contextmanager
def unit_of_work(wiring: Wiring) -> Iterator[Session]:
    """A transaction whose outbox rows (a saga step's work item ended) are published once it
    has committed; if publishing fails the outbox sweep sends them shortly."""
    with wiring.sessions.begin() as session:
        yield session
    pending = session.uow.take_outgoing()
    if pending:
        try:
            wiring.dispatcher.publish(pending)
        except Exception:
            log.exception("publishing %d outbox message(s) failed; the sweep will retry", len(pending))
