"""Submitting a saga: validate, dedup by idempotence key, write run + first dispatch at once."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from config import tracing
from config.logging import set_log_context
from config.settings import Settings
from models.base import transient, utcnow
from models.enums import SagaState
from models.keytemplate import KeyTemplateError, render
from models.principal import ALL_TENANTS
from models.problems import summary
from models.tables import SAGAS, STEPS, SagaRun, StepRun
from models.template import TemplateSpec
from orchestrator.errors import Conflict, InvalidInput, OrchestratorError
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
    """The saga run a submit created (or found under its idempotence key) and the outbox rows to publish.

    A saga created now also carries what its start wrote besides its own rows (``spec``, the
    timeline rows of the attempts it dispatched, whether it opened work items), so it can be
    answered without reading it back."""

    saga: SagaRun
    created: bool
    outbox: list[Outgoing]
    spec: TemplateSpec | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    opened_items: bool = False


def input_hash(template: str, data: Any) -> str:
    canonical = json.dumps({"template": template, "input": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_submission(input: Any, idempotence_key: str | None) -> None:
    """What a submit checks before it looks at the database: the key's length, and an input
    that is plain JSON."""
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
    check_submission(input, idempotence_key)
    attributes = {"workyard.template": template, "workyard.tenant": tenant}
    with tracing.span("saga submit", attributes=attributes) as span:
        submitted = _submit(sessions, settings, template, input, version, idempotence_key, tenant)
        if span is not None:
            span.set_attribute("workyard.saga_id", submitted.saga.id)
            span.set_attribute("workyard.created", submitted.created)
    set_log_context(saga_id=submitted.saga.id)
    return submitted


def _submit(
    sessions: SessionFactory,
    settings: Settings,
    template: str,
    input: Any,
    version: str | None,
    idempotence_key: str | None,
    tenant: str,
) -> Submitted:
    digest = input_hash(template, input)
    # Most keys are new: the saga is written without looking its key up first (a statement, on
    # PostgreSQL a round trip, on the path every upstream request takes). A key in use already
    # fails the insert on the (tenant, idempotence_key) constraint, as a concurrent submit with
    # the same key does, and is answered as before: with the saga it names, or a 409.
    try:
        with sessions.begin() as session:
            spec = get_template(session, template, version, tenant=tenant)
            check_input(spec, input)
            now = utcnow()
            engine = SagaEngine(session.uow, SqlSagaStore(session), settings, now)
            saga = start_saga(engine, spec, tenant=tenant, input=input, digest=digest, idempotence_key=idempotence_key)
            attempts = list(session.uow.attempts)
            opened = opens_items(spec)
            # Plain INSERTs of the new rows: the ORM's unit of work costs more than the SQL here,
            # on the path every upstream request takes. The objects stay out of the session.
            session.uow.write(session, first=new_rows([saga]))
    except (IntegrityError, OrchestratorError):
        # A key in use answers with its saga even where this input would now be refused (its
        # template since retired, or changed): the key names the job, whatever came after.
        if idempotence_key is None:
            raise
        with sessions.begin() as session:
            existing = _existing(session, tenant, idempotence_key, digest)
        if existing is None:
            raise
        return Submitted(existing, False, [])
    return Submitted(saga, True, session.uow.take_outgoing(), spec, attempts, opened)


def check_input(spec: TemplateSpec, input: Any) -> None:
    """The input meets the template's input schema, or an :class:`InvalidInput` naming each field."""
    errors = spec.input_errors(input)
    if errors:
        raise InvalidInput(
            f"input does not match the input schema of {spec.name} {spec.version}: " + summary(errors),
            details=errors,
        )


def start_saga(
    engine: SagaEngine,
    spec: TemplateSpec,
    *,
    tenant: str,
    input: Any,
    digest: str,
    idempotence_key: str | None,
) -> SagaRun:
    """A new saga run of ``spec``, started by ``engine`` (its first dispatch, timers and attempt
    rows are in the engine's unit of work); its own rows are the caller's to insert
    (:func:`new_rows`). Refuses, before anything is asked of the engine, an input that lacks what
    a step's key or mutex scope needs."""
    now: datetime = engine.now
    saga = transient(
        SagaRun,
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
        paused_ms=0,
        reruns=0,
        created_at=now,
        updated_at=now,
    )
    # Its trace is the one current now (the submit's span), if tracing.
    if (traceparent := tracing.current_traceparent()) is not None:
        saga.trace_id, saga.trace_parent = tracing.trace_id_of(traceparent), traceparent
    check_key_templates(saga, spec)
    # Set as loaded, not as a change: the run never enters the session (its rows are plain
    # INSERTs), and a change would fire the relationship's events once per step (back-references
    # and all), a sixth of what a batch submit costs.
    set_committed_value(saga, "steps", new_step_runs(spec, saga.id))
    engine.start(saga, spec)
    return saga


def new_rows(sagas: list[SagaRun]) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows of new saga runs and their step runs, for ``UnitOfWork.write(first=...)``: one
    statement per table however many sagas."""
    return [
        (SAGAS, [_row(saga, _SAGA_COLUMNS) for saga in sagas]),
        (STEPS, [_row(step, _STEP_COLUMNS) for saga in sagas for step in saga.steps]),
    ]


def opens_items(spec: TemplateSpec) -> bool:
    """Whether starting a saga of ``spec`` may open work items (its first step waits on one)."""
    return spec.steps[0].item_for("forward") is not None


_SAGA_COLUMNS = tuple(column.key for column in SAGAS.columns)
_STEP_COLUMNS = tuple(column.key for column in STEPS.columns)


def _row(obj: SagaRun | StepRun, columns: tuple[str, ...]) -> dict[str, Any]:
    # Read from the instance's dict, not through the ORM's attributes: a new object holds every
    # value set on it there, and one never set is None (its column's default is not applied).
    values = obj.__dict__
    return {key: values.get(key) for key in columns}


# Built once: a statement built per call costs more to build than to run.
_BY_KEY = select(SAGAS.c.id, SAGAS.c.input_hash).where(
    SAGAS.c.tenant == bindparam("tenant"), SAGAS.c.idempotence_key == bindparam("key")
)


def _existing(session: Session, tenant: str, key: str, digest: str) -> SagaRun | None:
    """The tenant's saga started with this key (another tenant's keys are not looked at)."""
    # Most keys are new: ask for the two columns the answer turns on, and load the saga only if
    # there is one.
    found = session.execute(_BY_KEY, {"tenant": tenant, "key": key}).first()
    if found is None:
        return None
    if found.input_hash != digest:
        raise key_conflict(key, found.id)
    return session.get(SagaRun, found.id)


def key_conflict(key: str, saga_id: str) -> Conflict:
    """The answer to an idempotence key used again with another template or input."""
    return Conflict(
        f"idempotence key {key!r} was already used for saga {saga_id} with a different "
        "template or input; use a new key for a new job",
        details=[{"path": "idempotence_key", "message": f"already names saga {saga_id}", "saga_id": saga_id}],
    )


def check_key_templates(saga: SagaRun, spec: Any) -> None:
    """Fail now, not at step 3, if the input lacks what a step's key or mutex scope needs."""
    problems = []
    for step in spec.steps:
        for field_name in ("idempotence_key", "mutex_scope"):
            template = getattr(step, field_name)
            if template:
                try:
                    rendered = render(template, step_values(saga, spec, step))
                except KeyTemplateError as exc:
                    problems.append({"path": f"steps.{step.name}.{field_name}", "message": str(exc)})
                    continue
                if len(rendered) > MAX_KEY_LENGTH:
                    problems.append(
                        {
                            "path": f"steps.{step.name}.{field_name}",
                            "message": f"{field_name} renders to {len(rendered)} characters; at most {MAX_KEY_LENGTH}",
                        }
                    )
    if problems:
        raise InvalidInput(
            "input lacks values that step keys need: " + "; ".join(p["message"] for p in problems), details=problems
        )
