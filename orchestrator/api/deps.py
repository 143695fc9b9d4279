"""Dependencies: the process's wiring, its sessions and its dispatcher."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models.agent_api import HeartbeatSource
from models.principal import Principal, PrincipalType
from orchestrator.agents import touch_agent
from orchestrator.service.wiring import Wiring

log = logging.getLogger(__name__)


async def get_wiring(request: Request) -> Wiring:
    # A coroutine, not a function: FastAPI would run a function in the thread pool.
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


def mark_live(wiring: Wiring, principal: Principal, source: HeartbeatSource = "http") -> None:
    """A registered agent's work call (claim, heartbeat, start, complete, ...) marks it live: in a
    short transaction of its own before the call's, so that the call's row locks never wait
    behind the agent's row, and a refused call (a 409) still counts as a sign of life. A failure
    here is logged, never the call's; ``touch_agent`` makes it cost nothing most of the time."""
    if principal.type is not PrincipalType.agent:
        return
    try:
        with wiring.sessions.begin() as session:
            touch_agent(session, principal, source)
    except SQLAlchemyError as exc:
        log.warning("could not mark %s live: %s", principal.ref, exc)
