"""A small typed client for workyard's HTTP API, for agents (upstream systems that submit sagas
have ``workers.upstream.SagaClient``).

    from workers.client import WorkyardClient

    with WorkyardClient("http://127.0.0.1:8700", token) as wy:
        while (item := wy.claim_next(ttl_s=120)) is not None:
            item = wy.start(item)                  # or resume what a vanished holder left
            with wy.keep_alive(item) as lease:     # heartbeats; LeaseLost at the end if it was lost
                result = summarize(item.payload, lease)
            wy.complete(item, result)              # a retry after a timeout answers the same

Every method maps to one endpoint and returns the API's own pydantic models. Errors raise
``ApiError`` with the HTTP status and the API's ``code``, ``message`` and ``details``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from models.agent_api import AgentRead
from models.agents import AgentSpec
from models.api import SagaPage, SagaRead, TemplateRead
from models.errors import WorkyardError
from models.work_api import (
    AllowedTransitions,
    EventRead,
    NextWork,
    WorkItemPage,
    WorkItemRead,
    WorkItemTypeRead,
)

M = TypeVar("M", bound=BaseModel)
ItemRef = str | WorkItemRead


@dataclass(frozen=True)
class Held:
    """A claim as its holder may know it without the whole item: the item's id and the
    ``lease_epoch`` its claim returned (an MCP proxy relays just these two)."""

    id: str
    lease_epoch: int | None


# What the holder's calls take: the claimed item as returned, or just its id and lease epoch.
HeldRef = WorkItemRead | Held


class ApiError(WorkyardError):
    """workyard's API answered with an error: its HTTP status, stable code, message and details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(f"{status} {code}: {message}", details=details)
        # The API's own message, as WorkyardError's contract has it; str(error) adds status and code.
        self.message = message
        self.status = status
        self.code = code
        self.retryable = status in (429, 502, 503, 504)
        # How long the API (or a proxy) asked the caller to wait before sending again, if it said.
        self.retry_after_s: float | None = None


class LeaseLost(ApiError):
    """The claim's lease was lost while the agent worked (it lapsed, or someone else holds the
    item now): the work may be someone else's; do not complete it."""

    def __init__(self, item_id: str, cause: ApiError | None = None):
        why = cause.message if cause is not None else "it lapsed while no heartbeat got through"
        super().__init__(409, "lease_lost", f"the lease on {item_id} was lost: {why}", cause.details if cause else None)
        self.item_id = item_id
        self.cause = cause


class Lease:
    """What ``keep_alive`` yields: the item as its last heartbeat returned it, whether the lease
    was lost (``lost`` is an Event to check or wait on), and a way to report progress."""

    def __init__(self, item: WorkItemRead):
        self.item = item
        self.lost = threading.Event()
        self.error: LeaseLost | None = None
        self._progress: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def report(self, progress: dict[str, Any]) -> None:
        """Send ``progress`` with the heartbeats from now on (the server keeps it when it
        changes): a holder that beats without new progress for too long is reported stalled."""
        with self._lock:
            self._progress = progress

    def check(self) -> None:
        """Raise LeaseLost if the lease was lost: call it between steps of long work."""
        if self.error is not None:
            raise self.error

    def _latest_progress(self) -> dict[str, Any] | None:
        # Every beat sends the latest: a beat that did not get through loses nothing.
        with self._lock:
            return self._progress

    def _lose(self, error: LeaseLost) -> None:
        self.error = error
        self.lost.set()


class WorkyardClient:
    """A typed client for workyard's HTTP API: sagas, work items, claims, leases, next work."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0, **httpx_options: Any):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, **httpx_options)

    def __enter__(self) -> WorkyardClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- work items ------------------------------------------------------------------------------

    def create_work_item(self, body: dict[str, Any], *, idempotence_key: str | None = None) -> WorkItemRead:
        """Create an item; with an idempotence key a retry returns the first item."""
        headers = {"Idempotency-Key": idempotence_key} if idempotence_key else None
        return self._call("POST", "/api/v1/work-items", WorkItemRead, json=body, headers=headers)

    def get_work_item(self, item: ItemRef) -> WorkItemRead:
        return self._call("GET", f"/api/v1/work-items/{_id(item)}", WorkItemRead)

    def list_work_items(self, **filters: Any) -> WorkItemPage:
        """Filters: type, status, label, assignee ("user:x"), reporter, parent_id, tenant, limit, cursor."""
        return self._call("GET", "/api/v1/work-items", WorkItemPage, params=_params(filters))

    def update_work_item(self, item: ItemRef, changes: dict[str, Any], *, version: int | None = None) -> WorkItemRead:
        body = {**changes, **({"version": version} if version is not None else {})}
        return self._call("PATCH", f"/api/v1/work-items/{_id(item)}", WorkItemRead, json=body)

    def delete_work_item(self, item: ItemRef) -> None:
        self._send("DELETE", f"/api/v1/work-items/{_id(item)}")

    def transition(self, item: ItemRef, to: str, *, reason: str | None = None) -> WorkItemRead:
        body = {"to": to, "reason": reason}
        return self._call("POST", f"/api/v1/work-items/{_id(item)}/transition", WorkItemRead, json=body)

    def allowed_transitions(self, item: ItemRef) -> AllowedTransitions:
        return self._call("GET", f"/api/v1/work-items/{_id(item)}/transitions", AllowedTransitions)

    def history(self, item: ItemRef) -> list[EventRead]:
        response = self._send("GET", f"/api/v1/work-items/{_id(item)}/history")
        return TypeAdapter(list[EventRead]).validate_python(response.json())

    # -- claims ----------------------------------------------------------------------------------

    def claim(self, item: ItemRef, *, ttl_s: float | None = None) -> WorkItemRead:
        return self._call("POST", f"/api/v1/work-items/{_id(item)}/claim", WorkItemRead, json={"ttl_s": ttl_s})

    def claim_next(self, *, ttl_s: float | None = None) -> WorkItemRead | None:
        """The best item offered to the caller, claimed; None when the queue is empty."""
        response = self._send("POST", "/api/v1/queues/claim-next", json={"ttl_s": ttl_s})
        return None if response.status_code == 204 else WorkItemRead.model_validate(response.json())

    def heartbeat(
        self, item: HeldRef, *, ttl_s: float | None = None, progress: dict[str, Any] | None = None
    ) -> WorkItemRead:
        """Extend the lease by the claim's own TTL (or ``ttl_s``), reporting ``progress``."""
        body = {"lease_epoch": item.lease_epoch, "ttl_s": ttl_s, "progress": progress}
        return self._call("POST", f"/api/v1/work-items/{item.id}/heartbeat", WorkItemRead, json=body)

    def release(self, item: HeldRef, *, reason: str | None = None) -> WorkItemRead:
        body = {"lease_epoch": item.lease_epoch, "reason": reason}
        return self._call("POST", f"/api/v1/work-items/{item.id}/release", WorkItemRead, json=body)

    def start(self, item: ItemRef | Held) -> WorkItemRead:
        epoch = _held_epoch(item)
        body = {"lease_epoch": epoch} if epoch is not None else None
        return self._call("POST", f"/api/v1/work-items/{_id(item)}/start", WorkItemRead, json=body)

    def complete(self, item: HeldRef, result: Any = None, *, cost: float | None = None) -> WorkItemRead:
        """Complete with ``result``; sending the same again (say after a timeout) answers the same.
        ``cost`` (in the agent's budget unit) is added to its spend, once."""
        body = {"lease_epoch": item.lease_epoch, "result": result, "cost": cost}
        return self._call("POST", f"/api/v1/work-items/{item.id}/complete", WorkItemRead, json=body)

    def fail(self, item: HeldRef, reason: str, *, cost: float | None = None) -> WorkItemRead:
        body = {"lease_epoch": item.lease_epoch, "reason": reason, "cost": cost}
        return self._call("POST", f"/api/v1/work-items/{item.id}/fail", WorkItemRead, json=body)

    @contextmanager
    def keep_alive(self, item: WorkItemRead, *, every_s: float | None = None) -> Iterator[Lease]:
        """Heartbeat ``item``'s lease in the background while the block runs (a third of the
        lease's TTL by default), sending what ``lease.report`` was given.

        A beat the server refuses (the lease lapsed, or the item was claimed again) means the
        lease is lost: ``lease.lost`` is set, ``lease.check()`` raises, and leaving the block
        raises ``LeaseLost`` (unless the block raised already). A beat that does not get through
        (network, 5xx, 429) is retried until the lease would have lapsed, then counts as lost."""
        lease = Lease(item)
        interval = every_s or _heartbeat_interval(item)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    lease.item = self.heartbeat(lease.item, progress=lease._latest_progress())
                except ApiError as exc:
                    if exc.retryable and not _lapsed(lease.item):
                        continue
                    lease._lose(LeaseLost(item.id, None if exc.retryable else exc))
                    return
                except httpx.HTTPError:
                    if _lapsed(lease.item):
                        lease._lose(LeaseLost(item.id))
                        return

        thread = threading.Thread(target=beat, name=f"heartbeat-{item.id}", daemon=True)
        thread.start()
        failed = False
        try:
            yield lease
        except BaseException:
            failed = True
            raise
        finally:
            stop.set()
            thread.join(timeout=interval + 5)
            if lease.error is not None and not failed:
                raise lease.error

    # -- the agent registry ----------------------------------------------------------------------

    def register_agent(self, agent_id: str, spec: AgentSpec, *, tenant: str | None = None) -> AgentRead:
        """Register an agent (the caller itself, with an agents:register token); the same spec
        again is a no-op."""
        body = {**spec.model_dump(mode="json"), "id": agent_id, "tenant": tenant}
        return self._call("POST", "/api/v1/agents", AgentRead, json=body)

    def get_agent(self, agent_id: str) -> AgentRead:
        """One registered agent: its spec, liveness, load and spend."""
        return self._call("GET", f"/api/v1/agents/{agent_id}", AgentRead)

    def agent_heartbeat(self, agent_id: str) -> AgentRead:
        """Tell the registry the agent is alive (its work calls do that too)."""
        return self._call("POST", f"/api/v1/agents/{agent_id}/heartbeat", AgentRead)

    # -- queues and next work --------------------------------------------------------------------

    def next_work(self, assignee_type: str, assignee_id: str) -> NextWork:
        params = {"assigneeType": assignee_type, "assigneeId": assignee_id}
        return self._call("GET", "/api/v1/works/next-work", NextWork, params=params)

    def available(self, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        return self._call("GET", "/api/v1/queues/available", WorkItemPage, params=_params(locals()))

    def claimed(self, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        return self._call("GET", "/api/v1/queues/claimed", WorkItemPage, params=_params(locals()))

    def lifecycle_queue(self, lifecycle: str, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        params = _params({"limit": limit, "cursor": cursor})
        return self._call("GET", f"/api/v1/queues/lifecycles/{lifecycle}", WorkItemPage, params=params)

    def group_queue(self, group: str, *, limit: int = 50, cursor: str | None = None) -> WorkItemPage:
        params = _params({"limit": limit, "cursor": cursor})
        return self._call("GET", f"/api/v1/queues/groups/{group}", WorkItemPage, params=params)

    # -- types, templates, sagas -----------------------------------------------------------------

    def register_type(
        self, name: str, schema: dict[str, Any], *, lifecycle: str = "canonical", description: str = ""
    ) -> WorkItemTypeRead:
        body = {"name": name, "schema": schema, "lifecycle": lifecycle, "description": description}
        return self._call("POST", "/api/v1/work-item-types", WorkItemTypeRead, json=body)

    def list_types(self) -> list[WorkItemTypeRead]:
        response = self._send("GET", "/api/v1/work-item-types")
        return TypeAdapter(list[WorkItemTypeRead]).validate_python(response.json())

    def add_template(self, spec: dict[str, Any]) -> TemplateRead:
        return self._call("POST", "/api/v1/templates", TemplateRead, json=spec)

    def submit_saga(
        self,
        template: str,
        input: dict[str, Any],
        *,
        version: str | None = None,
        idempotence_key: str | None = None,
    ) -> SagaRead:
        body = {"template": template, "input": input, "version": version, "idempotence_key": idempotence_key}
        return self._call("POST", "/api/v1/sagas", SagaRead, json=body)

    def get_saga(self, saga_id: str) -> SagaRead:
        return self._call("GET", f"/api/v1/sagas/{saga_id}", SagaRead)

    def list_sagas(self, **filters: Any) -> SagaPage:
        return self._call("GET", "/api/v1/sagas", SagaPage, params=_params(filters))

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if isinstance(kwargs.get("json"), dict):
            kwargs["json"] = {k: v for k, v in kwargs["json"].items() if v is not None}
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise api_error(response)
        return response


def _id(item: ItemRef | Held) -> str:
    return item if isinstance(item, str) else item.id


def _held_epoch(item: ItemRef | Held) -> int | None:
    """The lease epoch the caller says it holds ``item`` at; None for a bare id or an unclaimed item."""
    if isinstance(item, Held):
        return item.lease_epoch
    if isinstance(item, WorkItemRead) and item.claim is not None:
        return item.lease_epoch
    return None


def _params(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and k != "self"}


def _heartbeat_interval(item: WorkItemRead) -> float:
    claim = item.claim
    if claim is None or claim.lease_expires_at is None:
        return 30.0
    return max(0.05, (claim.lease_expires_at - claim.at).total_seconds() / 3)


def _lapsed(item: WorkItemRead) -> bool:
    claim = item.claim
    return claim is not None and claim.lease_expires_at is not None and claim.lease_expires_at <= datetime.now(UTC)


def api_error(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` an error answer of workyard's API stands for (its one error shape;
    anything else, say a proxy's page, as ``http_error``)."""
    try:
        body = response.json()["error"]
        error = ApiError(response.status_code, body["code"], body["message"], body.get("details"))
    except (ValueError, KeyError, TypeError):
        error = ApiError(response.status_code, "http_error", response.text[:500])
    try:
        error.retry_after_s = max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        pass  # absent, or an HTTP date: the caller's own backoff decides
    return error
