"""What the MCP tools call: one method per thing an agent does, mirroring ``WorkyardClient``.

Two implementations: the API's own (``inprocess.InProcessBackend``: service functions, the
caller's principal, one transaction per call) and the stdio proxy's (``proxy.ProxyBackend``:
``WorkyardClient`` over HTTP). Each raises ``WorkyardError`` with the API's code for what the API
would answer with an error; the tools turn that into an MCP tool error.
"""

from __future__ import annotations

from typing import Any, Protocol

from models.api import SagaRead
from models.work_api import EventRead, NextWork, WorkItemPage, WorkItemRead, WorkItemTypeRead


class Backend(Protocol):
    """The calls behind the MCP tools, for one caller (its token's principal)."""

    def next_work(self, assignee_type: str, assignee_id: str) -> NextWork: ...

    def available(self, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage: ...

    def claim_next(self, *, ttl_s: float | None = None) -> WorkItemRead | None: ...

    def claim(self, item_id: str, *, ttl_s: float | None = None) -> WorkItemRead: ...

    def start(self, item_id: str, *, lease_epoch: int | None = None) -> WorkItemRead: ...

    def heartbeat(
        self, item_id: str, *, lease_epoch: int, ttl_s: float | None = None, progress: dict[str, Any] | None = None
    ) -> WorkItemRead: ...

    def complete(
        self, item_id: str, *, lease_epoch: int | None, result: Any = None, cost: float | None = None
    ) -> WorkItemRead: ...

    def fail(
        self, item_id: str, *, lease_epoch: int | None, reason: str, cost: float | None = None
    ) -> WorkItemRead: ...

    def release(self, item_id: str, *, lease_epoch: int | None = None, reason: str | None = None) -> WorkItemRead: ...

    def get_work_item(self, item_id: str) -> WorkItemRead: ...

    def history(self, item_id: str) -> list[EventRead]: ...

    def submit_saga(
        self,
        template: str,
        input: dict[str, Any],
        *,
        version: str | None = None,
        idempotence_key: str | None = None,
    ) -> SagaRead: ...

    def get_saga(self, saga_id: str) -> SagaRead: ...

    def list_types(self) -> list[WorkItemTypeRead]: ...
