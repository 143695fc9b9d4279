"""claim-next for several calls in one transaction on PostgreSQL, their claim statements sent together.

A claim batch (``claim_batches``) used to run its calls' claim statements one after the other,
each waiting for its answer before the next was sent: a round trip per claim, and on a machine
whose cores are busy each round trip also waits for the server's process to be scheduled, then
for the caller's. Here they go in one psycopg pipeline, after the transaction's ``SET LOCAL`` of
generic plans: the server runs them in order, each on a snapshot that holds what the statements
before it wrote (a statement's probes see the claims made before it, as they did one at a time),
and the answers come back together.

What is finished in Python after a claim statement (``claims.answer``) now happens after the
statements of the calls behind it ran, instead of before. For a claim the statement made that
changes nothing those statements read (its traceability action is written before the commit,
and a stall ladder of the item's own only moves the item's own timer). It does for a pick whose
previous holder's lease lapsed: the statement locked it but left it to the ORM to take over, and
until then it still looks lapsed, so a statement behind it may have picked it too. Such a later
pick (one the statement did not claim either) is claimed again, alone, once the takeover is
written. A later statement that did claim an item claimed one that was free: not the lapsed
one, and the best it could have had with that one gone too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from models.principal import Principal
from models.work_api import WorkItemRead
from orchestrator.storage import driver_sql
from orchestrator.work import claim_statement, claims


@dataclass(frozen=True)
class Ask:
    """One claim-next call: who asks, and its lease and stall settings (see ``claims.claim_next``)."""

    principal: Principal
    ttl_s: float | None
    default_ttl_s: float
    default_stall_after_s: float | None


def claim_next_together(session: Session, asks: Sequence[Ask], now: datetime) -> list[WorkItemRead | None]:
    """``claims.claim_next`` for each of ``asks`` in order, in the session's transaction, all at
    ``now``: what each would have got claiming alone after the ones ahead of it. A statement
    that fails raises (SQLAlchemy's error), and the transaction is then to be rolled back."""
    statements = [
        claims.next_at_once(ask.principal, now, ask.ttl_s, ask.default_ttl_s, ask.default_stall_after_s) for ask in asks
    ]
    claim_statement.flush(session)
    rows = driver_sql.pipelined(session, statements, first=claim_statement.GENERIC_PLANS)
    answers: list[WorkItemRead | None] = []
    taken_over = False
    for ask, row in zip(asks, rows, strict=True):
        lapsed = claim_statement.lapsed(row)
        if lapsed and taken_over:
            # It may have picked the item an earlier call took over since (see the module's docstring).
            answers.append(
                claims.claim_next(
                    session,
                    ask.principal,
                    ttl_s=ask.ttl_s,
                    default_ttl_s=ask.default_ttl_s,
                    default_stall_after_s=ask.default_stall_after_s,
                    now=now,
                )
            )
            continue
        taken_over = taken_over or lapsed
        claimed = claim_statement.claimed(session, row)
        answers.append(
            claims.answer(session, ask.principal, claimed, now, ask.ttl_s, ask.default_ttl_s, ask.default_stall_after_s)
        )
    return answers
