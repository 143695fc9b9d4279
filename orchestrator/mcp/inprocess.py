"""The API's own backend for ``/mcp``: the service functions the HTTP routes call, with the
caller's principal and the process's wiring, each call one transaction as its route's is.

Scope and tenant checks are the service functions' own (or, where a route checks a scope as a
dependency, the same ``require`` here), so a token may do over MCP exactly what it may over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models.api import SagaCreate, SagaRead
from models.principal import Principal, PrincipalType, Scope
from models.problems import error_details, summary
from models.work_api import EventRead, NextWork, WorkItemPage, WorkItemRead, WorkItemTypeRead
from orchestrator.api.deps import mark_live, unit_of_work
from orchestrator.api.sagas import submit
from orchestrator.api.work_item_types import type_view
from orchestrator.errors import InvalidInput, Unavailable
from orchestrator.sagas.queries import read_saga
from orchestrator.service.wiring import Wiring
from orchestrator.storage.db import is_transient
from orchestrator.work import audit, claims, next_work, queues, types, views
from orchestrator.work.access import require

M = TypeVar("M", bound=BaseModel)


class InProcessBackend:
    """The MCP tools' calls for one principal, served by this API process."""

    def __init__(self, wiring: Wiring, principal: Principal):
        self.wiring = wiring
        self.principal = principal

    # -- work items ------------------------------------------------------------------------------

    def next_work(self, assignee_type: str, assignee_id: str) -> NextWork:
        with self._reading() as session:
            return next_work.next_work(
                session=session,
                principal=self.principal,
                assignee_type=PrincipalType(assignee_type),
                assignee_id=assignee_id,
            )

    def available(self, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        with self._reading() as session:
            return queues.available(session=session, principal=self.principal, limit=limit, cursor=cursor)

    def claim_next(self, *, ttl_s: float | None = None) -> WorkItemRead | None:
        # As the route does: through the process's claim batcher (claim_batches).
        mark_live(self.wiring, self.principal, "mcp")
        with _database_errors():
            return self.wiring.claim_batcher.claim_next(
                self.principal,
                ttl_s=ttl_s,
                default_ttl_s=self._default_ttl_s,
                default_stall_after_s=self.wiring.settings.work_stall_after_s,
            )

    def claim(self, item_id: str, *, ttl_s: float | None = None) -> WorkItemRead:
        with self._writing() as session:
            return claims.claim(
                session=session,
                principal=self.principal,
                item_id=item_id,
                ttl_s=ttl_s,
                default_ttl_s=self._default_ttl_s,
                default_stall_after_s=self.wiring.settings.work_stall_after_s,
            )

    def start(self, item_id: str, *, lease_epoch: int | None = None) -> WorkItemRead:
        with self._writing() as session:
            return claims.start(
                session=session,
                principal=self.principal,
                item_id=item_id,
                lease_epoch=lease_epoch,
                default_ttl_s=self._default_ttl_s,
                default_stall_after_s=self.wiring.settings.work_stall_after_s,
            )

    def heartbeat(
        self, item_id: str, *, lease_epoch: int, ttl_s: float | None = None, progress: dict[str, Any] | None = None
    ) -> WorkItemRead:
        with self._writing() as session:
            return claims.heartbeat(
                session=session,
                principal=self.principal,
                item_id=item_id,
                lease_epoch=lease_epoch,
                ttl_s=ttl_s,
                default_ttl_s=self._default_ttl_s,
                progress=progress,
            )

    def complete(
        self, item_id: str, *, lease_epoch: int | None, result: Any = None, cost: float | None = None
    ) -> WorkItemRead:
        with self._writing() as session:
            return claims.complete(
                session=session,
                principal=self.principal,
                item_id=item_id,
                lease_epoch=lease_epoch,
                result=result,
                max_result_bytes=self.wiring.settings.work_item_max_payload_bytes,
                cost=cost,
            )

    def fail(self, item_id: str, *, lease_epoch: int | None, reason: str, cost: float | None = None) -> WorkItemRead:
        with self._writing() as session:
            return claims.fail(
                session=session,
                principal=self.principal,
                item_id=item_id,
                lease_epoch=lease_epoch,
                reason=reason,
                cost=cost,
            )

    def release(self, item_id: str, *, lease_epoch: int | None = None, reason: str | None = None) -> WorkItemRead:
        with self._writing() as session:
            return claims.release(
                session=session, principal=self.principal, item_id=item_id, lease_epoch=lease_epoch, reason=reason
            )

    def get_work_item(self, item_id: str) -> WorkItemRead:
        with self._reading() as session:
            return views.get_item(session=session, principal=self.principal, item_id=item_id)

    def history(self, item_id: str) -> list[EventRead]:
        with self._reading() as session:
            views.get_item(session=session, principal=self.principal, item_id=item_id)  # scope, tenant: 404
            return [EventRead.model_validate(e) for e in audit.history(session, item_id)]

    def list_types(self) -> list[WorkItemTypeRead]:
        require(self.principal, Scope.work_read)
        with self._reading() as session:
            return [type_view(t) for t in types.list_types(session)]

    # -- sagas -----------------------------------------------------------------------------------

    def submit_saga(
        self,
        template: str,
        input: dict[str, Any],
        *,
        version: str | None = None,
        idempotence_key: str | None = None,
    ) -> SagaRead:
        require(self.principal, Scope.sagas_write)
        body = _request(
            SagaCreate, {"template": template, "input": input, "version": version, "idempotence_key": idempotence_key}
        )
        with _database_errors():
            saga, _ = submit(self.wiring, self.principal, body)
        return saga

    def get_saga(self, saga_id: str) -> SagaRead:
        require(self.principal, Scope.sagas_read)
        with self._reading() as session:
            return read_saga(session, saga_id, tenant=self.principal.tenant)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def _default_ttl_s(self) -> float:
        return self.wiring.settings.work_lease_ttl_s

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with _database_errors(), self.wiring.sessions() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        # As the routes do: a registered agent's work call marks it live (heard over MCP); then
        # one transaction, its outbox published once it committed.
        mark_live(self.wiring, self.principal, "mcp")
        with _database_errors(), unit_of_work(self.wiring) as session:
            yield session


@contextmanager
def _database_errors() -> Iterator[None]:
    """The database away or busy is ``unavailable`` (retry shortly), as the API's 503 says."""
    try:
        yield
    except SQLAlchemyError as exc:
        if not is_transient(exc):
            raise
        raise Unavailable("the database is unavailable or busy; retry shortly") from exc


def _request(model: type[M], fields: dict[str, Any]) -> M:
    """The HTTP API's request model for a call, so its rules hold here too (``invalid_input``)."""
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        details = error_details(exc.errors())
        raise InvalidInput(f"request is not valid: {summary(details)}", details=details) from exc
