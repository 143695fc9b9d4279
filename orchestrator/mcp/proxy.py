"""``workyard mcp``: the MCP server over stdio, relaying every call to a running workyard API.

An agent's host launches it with a URL and a token; it needs no database and no broker. The
API's error answers come back as ``ApiError`` (a ``WorkyardError`` with the API's code, message
and details), so the tools report them exactly as the API put them; an API that cannot be reached
is ``unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from models.api import SagaRead
from models.work_api import EventRead, NextWork, WorkItemPage, WorkItemRead, WorkItemTypeRead
from orchestrator.errors import Unauthorized, Unavailable
from orchestrator.mcp.tools import build_server
from workers.client import ApiError, Held, WorkyardClient

T = TypeVar("T")


class ProxyBackend:
    """The MCP tools' calls, made over HTTP with one token (``WorkyardClient``)."""

    def __init__(self, client: WorkyardClient, url: str):
        self.client = client
        self.url = url

    def next_work(self, assignee_type: str, assignee_id: str) -> NextWork:
        return self._relay(lambda: self.client.next_work(assignee_type, assignee_id))

    def available(self, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        return self._relay(lambda: self.client.available(limit=limit, cursor=cursor))

    def claim_next(self, *, ttl_s: float | None = None) -> WorkItemRead | None:
        return self._relay(lambda: self.client.claim_next(ttl_s=ttl_s))

    def claim(self, item_id: str, *, ttl_s: float | None = None) -> WorkItemRead:
        return self._relay(lambda: self.client.claim(item_id, ttl_s=ttl_s))

    def start(self, item_id: str, *, lease_epoch: int | None = None) -> WorkItemRead:
        return self._relay(lambda: self.client.start(Held(item_id, lease_epoch)))

    def heartbeat(
        self, item_id: str, *, lease_epoch: int, ttl_s: float | None = None, progress: dict[str, Any] | None = None
    ) -> WorkItemRead:
        return self._relay(lambda: self.client.heartbeat(Held(item_id, lease_epoch), ttl_s=ttl_s, progress=progress))

    def complete(
        self, item_id: str, *, lease_epoch: int | None, result: Any = None, cost: float | None = None
    ) -> WorkItemRead:
        return self._relay(lambda: self.client.complete(Held(item_id, lease_epoch), result, cost=cost))

    def fail(self, item_id: str, *, lease_epoch: int | None, reason: str, cost: float | None = None) -> WorkItemRead:
        return self._relay(lambda: self.client.fail(Held(item_id, lease_epoch), reason, cost=cost))

    def release(self, item_id: str, *, lease_epoch: int | None = None, reason: str | None = None) -> WorkItemRead:
        return self._relay(lambda: self.client.release(Held(item_id, lease_epoch), reason=reason))

    def get_work_item(self, item_id: str) -> WorkItemRead:
        return self._relay(lambda: self.client.get_work_item(item_id))

    def history(self, item_id: str) -> list[EventRead]:
        return self._relay(lambda: self.client.history(item_id))

    def submit_saga(
        self,
        template: str,
        input: dict[str, Any],
        *,
        version: str | None = None,
        idempotence_key: str | None = None,
    ) -> SagaRead:
        return self._relay(
            lambda: self.client.submit_saga(template, input, version=version, idempotence_key=idempotence_key)
        )

    def get_saga(self, saga_id: str) -> SagaRead:
        return self._relay(lambda: self.client.get_saga(saga_id))

    def list_types(self) -> list[WorkItemTypeRead]:
        return self._relay(self.client.list_types)

    def _relay(self, call: Callable[[], T]) -> T:
        with self._reaching():
            return call()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the workyard API at {self.url}: {type(exc).__name__}: {exc}; is it running?"
            ) from exc


def check_token(backend: ProxyBackend) -> None:
    """Fail now, with the API's own words, if the API is unreachable or refuses the token: a host
    that launches ``workyard mcp`` shows a clear startup error rather than an agent whose every
    call fails. A token that is valid but lacks ``work:read`` passes (the probe only lists types)."""
    try:
        backend.list_types()
    except ApiError as exc:
        if exc.status == 401:
            raise Unauthorized(f"the workyard API at {backend.url} refused the token: {exc.message}") from exc


def serve_stdio(url: str, token: str) -> None:
    """Serve the MCP tools over stdin/stdout until the host closes them."""
    with WorkyardClient(url, token) as client:
        backend = ProxyBackend(client, url)
        check_token(backend)
        build_server(lambda _request: backend).run("stdio")
