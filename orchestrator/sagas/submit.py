"""Submitting a saga: validate, dedup by idempotence key, write run + first dispatch at once."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import Settings
from models.base import utcnow
from models.enums import SagaState
from models.keytemplate import KeyTemplateError, render
from models.principal import ALL_TENANTS
from models.problems import summary
from models.tables import SAGAS, STEPS, SagaRun, StepRun
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.sagas.engine import SagaEngine, new_step_runs
from orchestrator.sagas.keys import step_values
from orchestrator.sagas.store import SqlSagaStore
from orchestrator.sagas.templates import get_template
from orchestrator.storage.db import SessionFactory
from orchestrator.storage.unit_of_work import Outgoing

# Rendered idempotence keys and mutex scopes are stored and used as Redis keys: keep them sane.
MAX_KEY_LENGTH = 400


@dataclass(frozen=True)
class Submitted:
    """The saga run a submit created (or found under its idempotence key) and the outbox rows to publish."""

    saga: SagaRun
    created: bool
    outbox: list[Outgoing]


def input_hash(template: str, data: Any) -> str:
    canonical = json.dumps({"template": template, "input": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_saga(
    sessions: SessionFactory,
    settings: Settings,
    *,
    template: str,
    input: Any,
    version: str | None = None,
    idempotence_key: str | None = None,
    tenant: str = ALL_TENANTS,
) -> Submitted:
    """Start a saga, or return the one already started with this idempotence key.

    The same key with a different template or input is a conflict, never a second run.
    """
    if idempotence_key is not None and not (0 < len(idempotence_key) <= 255):
        raise InvalidInput(
            "idempotence key must be 1 to 255 characters",
            details=[{"path": "idempotence_key", "message": "length must be 1..255"}],
        )
    try:
        # NaN and Infinity are not JSON: PostgreSQL refuses them, and no other system reads them.
        json.dumps(input, allow_nan=False)
    except ValueError as exc:
        raise InvalidInput(
            "input must be plain JSON: NaN and Infinity are not allowed",
            details=[{"path": "input", "message": str(exc)}],
        ) from exc
    digest = input_hash(template, input)
    try:
        with sessions.begin() as session:
            if idempotence_key is not None:
                existing = _existing(session, tenant, idempotence_key, digest)
                if existing is not None:
                    return Submitted(existing, False, [])
            spec = get_template(session, template, version, tenant=tenant)
            errors = spec.input_errors(input)
            if errors:
                raise InvalidInput(
                    f"input does not match the input schema of {spec.name} {spec.version}: " + summary(errors),
                    details=errors,
                )
            now = utcnow()
            saga = SagaRun(
                id=str(uuid.uuid4()),
                tenant=tenant,
                template_name=spec.name,
                template_version=spec.version,
                state=SagaState.running,
                input=input,
                input_hash=digest,
                idempotence_key=idempotence_key,
                results={},
                sla_breach_count=0,
                sla_events=[],
                created_at=now,
                updated_at=now,
            )
            _check_key_templates(saga, spec)
            saga.steps = new_step_runs(spec)
            for step in saga.steps:
                step.saga_id = saga.id
            engine = SagaEngine(session.uow, SqlSagaStore(session), settings, now)
            engine.start(saga, spec)
            # Plain INSERTs of the new rows: the ORM's unit of work costs more than the SQL here,
            # on the path every upstream request takes. The objects stay out of the session.
            session.uow.write(
                session, first=[(insert(SAGAS), [_row(saga)]), (insert(STEPS), [_row(s) for s in saga.steps])]
            )
    except IntegrityError:
        # Another request with the same key won the race; answer with its saga.
        if idempotence_key is None:
            raise
        with sessions.begin() as session:
            existing = _existing(session, tenant, idempotence_key, digest)
        if existing is None:
            raise
        return Submitted(existing, False, [])
    return Submitted(saga, True, session.uow.take_outgoing())


def _row(obj: SagaRun | StepRun) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in obj.__table__.columns}


def _existing(session: Session, tenant: str, key: str, digest: str) -> SagaRun | None:
    """The tenant's saga started with this key (another tenant's keys are not looked at)."""
    saga = session.scalar(select(SagaRun).where(SagaRun.tenant == tenant, SagaRun.idempotence_key == key))
    if saga is not None and saga.input_hash != digest:
        raise Conflict(
            f"idempotence key {key!r} was already used for saga {saga.id} with a different "
            "template or input; use a new key for a new job",
            details=[{"path": "idempotence_key", "message": f"already names saga {saga.id}", "saga_id": saga.id}],
        )
    return saga


def _check_key_templates(saga: SagaRun, spec: Any) -> None:
    """Fail now, not at step 3, if the input lacks what a step's key or mutex scope needs."""
    problems = []
    for step in spec.steps:
        for field in ("idempotence_key", "mutex_scope"):
            template = getattr(step, field)
            if template:
                try:
                    rendered = render(template, step_values(saga, spec, step))
                except KeyTemplateError as exc:
                    problems.append({"path": f"steps.{step.name}.{field}", "message": str(exc)})
                    continue
                if len(rendered) > MAX_KEY_LENGTH:
                    problems.append(
                        {
                            "path": f"steps.{step.name}.{field}",
                            "message": f"{field} renders to {len(rendered)} characters; at most {MAX_KEY_LENGTH}",
                        }
                    )
    if problems:
        raise InvalidInput(
            "input lacks values that step keys need: " + "; ".join(p["message"] for p in problems), details=problems
        )
