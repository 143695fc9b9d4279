"""Submitting many sagas at once: each entry is created, found under its idempotence key, or
refused, on its own, and answered in order; every saga created is written in one transaction.

What holds for a single submit holds for each entry (:mod:`orchestrator.sagas.submit`): the same
checks, the same answer for a key used again with the same template and input (the first saga)
or another (a conflict). Two entries of one batch with one key are one saga when their template
and input agree; the later one is a conflict when they do not. An entry that is refused never
keeps the others from being created.

It costs what a batch should: templates are looked up once per name and version, existing keys
in one query, and the new sagas, their steps, attempts and dispatches go in one INSERT per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import tracing
from config.settings import Settings
from models.api import SagaSummary
from models.base import utcnow
from models.tables import SAGAS, SagaRun
from models.template import TemplateSpec
from orchestrator.errors import OrchestratorError
from orchestrator.sagas.engine import SagaEngine
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.submit import (
    check_input,
    check_submission,
    input_hash,
    key_conflict,
    new_rows,
    start_saga,
)
from orchestrator.sagas.templates import get_template
from orchestrator.storage.bulk import any_of
from orchestrator.storage.db import SessionFactory
from orchestrator.storage.unit_of_work import Outgoing

# The columns an answer shows (a saga's summary) and the one a retry is compared on.
_SUMMARY = [SAGAS.c[name] for name in SagaSummary.model_fields] + [SAGAS.c.input_hash]


@dataclass(frozen=True)
class BatchEntry:
    """One saga of a batch: what a single submit takes, its tenant already decided."""

    template: str
    input: Any
    tenant: str
    version: str | None = None
    idempotence_key: str | None = None


@dataclass(frozen=True)
class BatchAnswer:
    """What became of one entry: its saga (``created`` now, or found under its idempotence key),
    or the error that refused it."""

    saga: SagaSummary | None
    created: bool = False
    error: OrchestratorError | None = None


@dataclass(frozen=True)
class BatchSubmitted:
    """One answer per entry, in order, and the outbox rows to publish (the first dispatches)."""

    answers: list[BatchAnswer]
    outbox: list[Outgoing]


def submit_batch(sessions: SessionFactory, settings: Settings, entries: Sequence[BatchEntry]) -> BatchSubmitted:
    """Submit every entry (see the module); nothing is published here."""
    try:
        return _submit(sessions, settings, entries)
    except IntegrityError:
        # A concurrent submit took one of the keys between the lookup and the insert, and the
        # whole transaction rolled back: once more, and that entry finds the key taken.
        return _submit(sessions, settings, entries)


def _submit(sessions: SessionFactory, settings: Settings, entries: Sequence[BatchEntry]) -> BatchSubmitted:
    answers: list[BatchAnswer | None] = [None] * len(entries)
    digests: list[str] = [""] * len(entries)
    for i, entry in enumerate(entries):
        try:
            check_submission(entry.input, entry.idempotence_key)
        except OrchestratorError as exc:
            answers[i] = _refused(exc)
            continue
        digests[i] = input_hash(entry.template, entry.input)
    with sessions.begin() as session:
        keys = {(e.tenant, e.idempotence_key) for e, a in zip(entries, answers, strict=True) if a is None}
        found = _existing(session, {(tenant, key) for tenant, key in keys if key is not None})
        engine = SagaEngine(session.uow, SqlSagaStore(session), settings, utcnow())
        specs: dict[tuple[str, str, str | None], TemplateSpec | OrchestratorError] = {}
        # Sagas created earlier in this batch, by (tenant, key): (input digest, its answer).
        made: dict[tuple[str, str], tuple[str, SagaSummary]] = {}
        created: list[SagaRun] = []
        for i, entry in enumerate(entries):
            if answers[i] is not None:
                continue
            key = entry.idempotence_key
            if key is not None:
                taken = made.get((entry.tenant, key))
                if taken is None and (row := found.get((entry.tenant, key))) is not None:
                    taken = (row.input_hash, SagaSummary.model_validate(row))
                if taken is not None:
                    # The key names a saga already: the same one again, or another job under a used key.
                    digest, saga = taken
                    answers[i] = BatchAnswer(saga) if digest == digests[i] else _refused(key_conflict(key, saga.id))
                    continue
            try:
                spec = _template(specs, session, entry)
                if isinstance(spec, OrchestratorError):
                    raise spec
                check_input(spec, entry.input)
                # One trace per saga: each starts its own, linked to the batch's request.
                with tracing.span("saga submit", new_trace=True, attributes=_attributes(entry, i)) as span:
                    run = start_saga(
                        engine, spec, tenant=entry.tenant, input=entry.input, digest=digests[i], idempotence_key=key
                    )
                    if span is not None:
                        span.set_attribute("workyard.saga_id", run.id)
            except OrchestratorError as exc:
                answers[i] = _refused(exc)
                continue
            created.append(run)
            summary = SagaSummary.model_validate(run)
            answers[i] = BatchAnswer(summary, created=True)
            if key is not None:
                made[(entry.tenant, key)] = (digests[i], summary)
        if created:
            session.uow.write(session, first=new_rows(created))
    return BatchSubmitted([a for a in answers if a is not None], session.uow.take_outgoing())


def _refused(error: OrchestratorError) -> BatchAnswer:
    return BatchAnswer(None, error=error)


def _attributes(entry: BatchEntry, index: int) -> dict[str, str | int]:
    return {"workyard.template": entry.template, "workyard.tenant": entry.tenant, "workyard.batch_index": index}


def _existing(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Row[Any]]:
    """The sagas already started under these (tenant, idempotence key) pairs, in one query."""
    if not keys:
        return {}
    tenants = {tenant for tenant, _ in keys}
    rows = session.execute(
        select(*_SUMMARY).where(
            SAGAS.c.tenant.in_(tenants), any_of(session, SAGAS.c.idempotence_key, {key for _, key in keys})
        )
    )
    # Asked by tenant and key apart: a row of one tenant with another's key is no answer.
    return {(row.tenant, row.idempotence_key): row for row in rows if (row.tenant, row.idempotence_key) in keys}


def _template(
    specs: dict[tuple[str, str, str | None], TemplateSpec | OrchestratorError], session: Session, entry: BatchEntry
) -> TemplateSpec | OrchestratorError:
    """The template an entry runs, or why there is none: looked up once per tenant, name and
    version in the batch."""
    cache_key = (entry.tenant, entry.template, entry.version)
    spec = specs.get(cache_key)
    if spec is None:
        try:
            spec = get_template(session, entry.template, entry.version, tenant=entry.tenant)
        except OrchestratorError as exc:
            spec = exc
        specs[cache_key] = spec
    return spec
