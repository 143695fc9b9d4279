"""A typed client for upstream systems that submit sagas to workyard over HTTP.

    from workers.upstream import SagaClient
    from models.api import SagaCreate

    with SagaClient("http://127.0.0.1:8700", token) as sagas:
        saga = sagas.submit("shop.order", {"order_id": "A-1"}, idempotence_key="order-A-1")
        done = sagas.wait(saga.id, timeout_s=120)            # completed, compensated, ...

        entries = [SagaCreate(template="shop.order", input={"order_id": f"A-{n}"},
                              idempotence_key=f"order-A-{n}") for n in range(5000)]
        for result in sagas.submit_many(entries):            # in batches of 1,000, in order
            if result.error is not None:
                print(result.index, result.status, result.error.message)

Every call returns the API's own pydantic models; an error answer raises ``ApiError`` (status,
``code``, ``message``, ``details``), as the agents' client does.

Retries. A submit that carries an idempotence key is sent again when the network fails or the
API answers 429 or 503 (or a gateway 502/504): the key makes a second delivery answer with the
saga the first one started. A submit without a key is never sent twice: a network failure then
raises :class:`SubmitOutcomeUnknown` (the saga may or may not have been started), a 503 or 429 an
``ApiError`` whose ``retryable`` says it may be sent again. A batch is retried only when every
entry carries a key. Reads (``get``, ``wait``) are retried the same way: reading twice is safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from models.api import MAX_BATCH, SagaBatchRead, SagaBatchResult, SagaCreate, SagaRead
from models.errors import WorkyardError
from workers.client import ApiError, api_error

Entry = SagaCreate | Mapping[str, Any]

# How a retry waits when the API names no Retry-After: doubling from the first, up to the last.
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class SubmitOutcomeUnknown(WorkyardError):
    """A submit without an idempotence key met a network failure after it may have reached the
    API: the saga may or may not have been started, and it was not sent again (it could start a
    second one). Send submits with an idempotence key to have them retried safely."""

    def __init__(self, what: str, cause: httpx.TransportError):
        super().__init__(
            f"{what} may or may not have started a saga ({type(cause).__name__}: {cause}); without an "
            "idempotence key it was not sent again: look for it before sending it again, or give submits a key"
        )
        self.cause = cause


class SagaClient:
    """Submit sagas, one or many at once, and follow them (see the module)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        **httpx_options: Any,
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, **httpx_options)
        self.retries = retries

    def __enter__(self) -> SagaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- submitting ------------------------------------------------------------------------------

    def submit(
        self,
        template: str,
        input: Mapping[str, Any],
        *,
        idempotence_key: str | None = None,
        version: str | None = None,
    ) -> SagaRead:
        """Start a saga of ``template`` (its highest version, or ``version``) with ``input``; with
        an idempotence key, the saga that key already names if it was sent before with the same
        template and input (a 409 ``ApiError`` if with another)."""
        body = _body(SagaCreate(template=template, input=dict(input), version=version, idempotence_key=idempotence_key))
        response = self._request(
            "POST",
            "/api/v1/sagas",
            json=body,
            safe=idempotence_key is not None,
            what=f"a submit of {template}",
        )
        return SagaRead.model_validate(response.json())

    def submit_many(self, entries: Iterable[Entry]) -> list[SagaBatchResult]:
        """Submit every entry (a ``SagaCreate``, or a mapping of its fields, judged by the API), in
        batches of up to 1,000: one result per entry, in order, its ``index`` the entry's
        position in ``entries``. Each result holds the saga (``status`` 202: started now, 200:
        started before under its key) or the error that refused the entry (``status`` 4xx); a
        refused entry never keeps the others from being submitted."""
        bodies = [_body(e) if isinstance(e, SagaCreate) else dict(e) for e in entries]
        results: list[SagaBatchResult] = []
        for start in range(0, len(bodies), MAX_BATCH):
            results += self._batch(bodies[start : start + MAX_BATCH], start)
        return results

    def _batch(self, bodies: list[dict[str, Any]], offset: int) -> list[SagaBatchResult]:
        safe = all(body.get("idempotence_key") for body in bodies)
        try:
            response = self._request(
                "POST", "/api/v1/sagas/batch", json={"sagas": bodies}, safe=safe, what="a batch submit"
            )
        except ApiError as exc:
            if exc.status != 413 or len(bodies) == 1:
                raise
            # Over the API's request size: nothing was written; send it in halves.
            half = len(bodies) // 2
            return self._batch(bodies[:half], offset) + self._batch(bodies[half:], offset + half)
        answered = SagaBatchRead.model_validate(response.json()).results
        return [result.model_copy(update={"index": result.index + offset}) for result in answered]

    # -- following -------------------------------------------------------------------------------

    def get(self, saga_id: str) -> SagaRead:
        """The saga as it stands: its state, steps and every attempt (a 404 ``ApiError`` if it is
        not there, or is another tenant's)."""
        response = self._request("GET", f"/api/v1/sagas/{saga_id}", safe=True, what=f"reading saga {saga_id}")
        return SagaRead.model_validate(response.json())

    def wait(self, saga_id: str, *, timeout_s: float = 60.0, poll_s: float = 0.5) -> SagaRead:
        """Poll the saga every ``poll_s`` until it is in a final state (completed, compensated,
        compensation_failed) and return it; ``TimeoutError`` naming the saga and the state it was
        last seen in if that takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            saga = self.get(saga_id)
            if saga.state.terminal:
                return saga
            left = deadline - time.monotonic()
            if left <= 0:
                running = ", ".join(f"{s.name} {s.state.value}" for s in saga.steps if s.state.value != "pending")
                raise TimeoutError(
                    f"saga {saga_id} ({saga.template_name}) did not finish within {timeout_s:g} s: last seen "
                    f"{saga.state.value}" + (f" ({running})" if running else "")
                )
            time.sleep(min(poll_s, left))

    # -- plumbing --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, safe: bool, what: str, **kwargs: Any) -> httpx.Response:
        """Send once, or (``safe``: a read, or a submit that carries its idempotence keys) up to
        ``retries`` more times while the failure says a retry may work."""
        if not safe:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise SubmitOutcomeUnknown(what, exc) from exc
            return _answered(response)
        for attempt in Retrying(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(self.retries + 1),
            wait=_wait,
            reraise=True,
        ):
            with attempt:
                return _answered(self._http.request(method, path, **kwargs))
        raise AssertionError("tenacity returns the answer or raises the last error")


def _answered(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise api_error(response)
    return response


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.retryable)


# Full jitter: many clients that failed together do not come back together.
_backoff = wait_random_exponential(multiplier=FIRST_BACKOFF_S, max=MAX_BACKOFF_S)


def _wait(state: RetryCallState) -> float:
    """What the API asked for (Retry-After, at most MAX_BACKOFF_S), else the backoff."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, ApiError) and error.retry_after_s is not None:
        return min(MAX_BACKOFF_S, error.retry_after_s)
    return _backoff(state)


def _body(entry: SagaCreate) -> dict[str, Any]:
    """The entry as the API takes it, fields left out rather than sent as null."""
    return entry.model_dump(mode="json", exclude_none=True)
