"""Runs one delivery of a step dispatch: validate, dedup, lease, call, store, report.

Nothing here knows about Celery's task API; :mod:`workers.celery.app` only feeds messages in and
publishes what comes out, so this is the piece the tests drive hardest.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from config import keys, tracing
from config.logging import log_context
from models.enums import Outcome, Phase
from models.messages import DeadLetterReport, ErrorInfo, StepDispatch, StepReport
from models.problems import body_text, error_details, summary
from workers.context import StepContext
from workers.errors import StepFailed, TransientError
from workers.hooks import HookChain
from workers.registry import StepHandler, get_handler
from workers.renewal import Renewal
from workers.store import Acquire, Begin, Guard, ReportPush, StepStore

log = logging.getLogger(__name__)

# Retried inside one attempt before the attempt counts as failed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)
TRANSIENT_TRIES = 3
BUSY_POLL_S = 0.05

Message = StepReport | DeadLetterReport
# Renders a report (its JSON body) as the broker message that sends it: (list key, payload).
RenderReport = Callable[[dict[str, Any]], tuple[str, str]]


@dataclass
class RuntimeConfig:
    """How a worker runs deliveries: mutex lease length and wait, its name, transient retries, report copies."""

    lease_ttl_ms: int
    lease_wait_ms: int
    worker: str
    transient_tries: int = TRANSIENT_TRIES
    # Copies of each report to send (2 under the duplicate-delivery fault setting).
    report_copies: int = 1
    # What the task runner raises inside a handler that ran past the step's timeout (Celery's
    # soft time limit, set by workers.celery): reported as a retryable Timeout.
    timeout_errors: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """What one delivery came to.

    ``messages``: still to send to the orchestrator (maybe none: with ``render_report``, the
    report went with the stored outcome). ``outcome``: what the orchestrator is told of the
    attempt (its report, or a dead letter); None when the delivery was dropped unrun, and
    ``dropped`` says why. ``error``: the handler's exception, where it raised one.
    """

    messages: list[Message]
    outcome: Message | None = None
    error: BaseException | None = None
    dropped: str | None = None

    @classmethod
    def of(cls, message: Message, error: BaseException | None = None) -> Delivery:
        return cls([message], message, error)


class StepRuntime:
    """Runs one delivery of a step dispatch: idempotence check, mutex lease, handler, stored result, report."""

    def __init__(
        self,
        store: StepStore,
        config: RuntimeConfig,
        hooks: HookChain | None = None,
        *,
        render_report: RenderReport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        # The worker's wall clock: checks a dispatch's deadline (with Redis's, see _deliver) and
        # stamps reports. A test may shift it.
        self.clock = clock
        self.config = config
        self.hooks = hooks or HookChain()
        # Where the broker is the store's Redis: the report goes out with the stored outcome.
        self.render_report = render_report

    def execute(self, body: Any, *, source: str = "cap") -> list[Message]:
        """Handle one delivery; returns the messages still to send to the orchestrator (maybe
        none: with ``render_report``, a report stored with its outcome was sent with it)."""
        return self.deliver(body, source=source).messages

    def deliver(self, body: Any, *, source: str = "cap") -> Delivery:
        """Handle one delivery: the messages still to send, and what became of the attempt."""
        try:
            dispatch = StepDispatch.model_validate(body)
        except ValidationError as exc:
            reason = f"malformed step dispatch: {summary(error_details(exc.errors()))}"
            return Delivery.of(DeadLetterReport(source=source, reason=reason, body=body_text(body)))
        with (
            log_context(saga_id=dispatch.saga_id, tenant=dispatch.tenant, step=dispatch.step),
            _run_span(dispatch, self.config.worker) as span,
        ):
            delivery = self._handle(dispatch)
            if span is not None:
                _describe(span, delivery)
            return delivery

    def _handle(self, dispatch: StepDispatch) -> Delivery:
        handler = get_handler(dispatch.handler)
        if handler is None:
            return Delivery.of(
                self._fail(
                    dispatch,
                    "UnknownHandler",
                    f"no handler {dispatch.handler!r} is registered on worker {self.config.worker}",
                    retryable=False,
                )
            )
        if handler.capability != dispatch.capability:
            return Delivery.of(
                self._fail(
                    dispatch,
                    "WrongCapability",
                    f"handler {handler.name!r} is registered for capability "
                    f"{handler.capability!r}, but the template runs it on {dispatch.capability!r}",
                    retryable=False,
                )
            )
        owner = delivery_owner(self.config.worker)
        return self._deliver(dispatch, handler, owner)

    def _deliver(self, dispatch: StepDispatch, handler: StepHandler, owner: str) -> Delivery:
        key = dispatch.idempotence_key
        deadline = time.monotonic() + self.store.claim_ttl_ms / 1000 * 2
        # Past its deadline, the orchestrator has moved on: no use running it. The worker's clock
        # alone does not decide (one running ahead would drop fresh work, and its saga would wait
        # for the attempt's deadline): Redis's clock must agree (see workers.store._BEGIN). One
        # running behind runs a stale dispatch; its report is then dropped as stale, and the
        # idempotence key keeps its effects once.
        expires_at = dispatch.expires_at
        expired_at = expires_at if expires_at is not None and self.clock() > expires_at else None
        while True:
            answer = self.store.begin(key, dispatch.saga_id, dispatch.attempt, owner, expired_at=expired_at)
            if answer.decision is Begin.expired:
                log.info(
                    "dropping saga %s step %s attempt %d: past its deadline, the orchestrator has moved on",
                    dispatch.saga_id,
                    dispatch.step,
                    dispatch.attempt,
                )
                return Delivery([], dropped="past its deadline: the orchestrator has moved on")
            if answer.decision is not Begin.busy:
                break
            if time.monotonic() > deadline:
                # The claim kept being renewed: its owner is alive and will report.
                log.info(
                    "saga %s step %s attempt %d is running elsewhere; dropping duplicate",
                    dispatch.saga_id,
                    dispatch.step,
                    dispatch.attempt,
                )
                return Delivery([], dropped="a duplicate: this attempt is running on another delivery")
            time.sleep(BUSY_POLL_S)

        if answer.decision is Begin.result:
            return Delivery.of(self._report(dispatch, Outcome.succeeded, result=json.loads(answer.stored or "null")))
        if answer.decision is Begin.report:
            stored = StepReport.model_validate_json(answer.stored or "{}")
            return Delivery.of(stored.model_copy(update=_identity(dispatch)))
        if answer.decision is Begin.lost:
            # The attempt is the dead worker's: the timeline names it (where to look), not this
            # worker, whose redelivery only noticed.
            dead = owner_worker(answer.stored or "")
            report = self._report(
                dispatch,
                Outcome.lost,
                error=ErrorInfo(
                    type="WorkerLost",
                    message=f"the delivery of this attempt on {dead or 'an unknown worker'} died before it "
                    f"finished (found by {self.config.worker})",
                ),
            ).model_copy(update={"worker": dead})
            return self._store(dispatch, owner, report)
        # The claim is renewed from here on, also while the step waits for its mutex.
        claim = (keys.run_claim(dispatch.idempotence_key), self.store.claim_ttl_ms)
        guards = {claim[0]: Guard.claim(dispatch.idempotence_key)}
        with Renewal(self.store, owner, [claim], guards=guards) as renewal:
            report, error = self._run(dispatch, handler, owner, renewal)
        took_mutex = len(renewal.leases) > 1  # the scope's lease follows the claim, if the step took it
        return self._store(dispatch, owner, report, took_mutex=took_mutex, lost=renewal.lost, error=error)

    def _run(
        self, dispatch: StepDispatch, handler: StepHandler, owner: str, renewal: Renewal
    ) -> tuple[StepReport, BaseException | None]:
        """The attempt's report, and the handler's exception where it raised one."""
        started = self.clock()
        try:
            cmd = handler.input_model.model_validate(dispatch.input)
        except ValidationError as exc:
            invalid = self._fail(
                dispatch,
                "InvalidInput",
                f"input does not fit {handler.input_model.__name__}: {summary(error_details(exc.errors()))}",
                retryable=False,
                started=started,
            )
            return invalid, None

        if dispatch.mutex_scope is not None:
            granted = self._acquire(dispatch, owner)
            if granted is not Acquire.granted:
                deferred = self._report(
                    dispatch,
                    Outcome.deferred,
                    started=started,
                    error=ErrorInfo(
                        type="MutexBusy" if granted is Acquire.busy else "StaleFencingToken",
                        message=f"mutex scope {dispatch.mutex_scope!r} is "
                        + (
                            "held by another step"
                            if granted is Acquire.busy
                            else f"already past fencing token {dispatch.fencing_token}"
                        ),
                    ),
                )
                return deferred, None
            renewal.add(
                keys.mutex_lease(dispatch.mutex_scope),
                self.config.lease_ttl_ms,
                Guard.lease(dispatch.mutex_scope, dispatch.fencing_token or 0),
            )

        ctx = StepContext(
            saga_id=dispatch.saga_id,
            step=dispatch.step,
            phase=dispatch.phase,
            attempt=dispatch.attempt,
            idempotence_key=dispatch.idempotence_key,
            fencing_token=dispatch.fencing_token,
            mutex_scope=dispatch.mutex_scope,
            results=dispatch.results,
            worker=self.config.worker,
            member=dispatch.member,
            each=dispatch.each,
        )
        try:
            return self._call(dispatch, handler, ctx, cmd, started)
        except BaseException:
            # Normally _store releases the lease with the outcome; here there is no outcome.
            if dispatch.mutex_scope is not None:
                self.store.release(keys.mutex_lease(dispatch.mutex_scope), owner)
            raise

    def _acquire(self, dispatch: StepDispatch, owner: str) -> Acquire:
        assert dispatch.mutex_scope is not None
        token = dispatch.fencing_token or 0
        deadline = time.monotonic() + self.config.lease_wait_ms / 1000
        pause = BUSY_POLL_S
        while True:
            answer = self.store.acquire(dispatch.mutex_scope, owner, self.config.lease_ttl_ms, token)
            if answer is not Acquire.busy or time.monotonic() >= deadline:
                return answer
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    def _call(
        self, dispatch: StepDispatch, handler: StepHandler, ctx: StepContext, cmd: BaseModel, started: datetime
    ) -> tuple[StepReport, BaseException | None]:
        self.hooks.before(ctx)
        result: Any = None
        error: BaseException | None = None
        try:
            retrying = Retrying(
                retry=retry_if_exception_type(TRANSIENT_ERRORS),
                stop=stop_after_attempt(self.config.transient_tries),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                reraise=True,
            )
            call: Callable[[], Any] = lambda: handler.func(ctx, cmd)  # noqa: E731
            result = retrying(call)
            try:
                payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
                json.dumps(payload)  # a result that cannot travel as JSON fails here, not later
            except (TypeError, ValueError) as exc:
                # Only the result's serialisation: running the handler again would return the same.
                error = exc
                return self._fail(dispatch, type(exc).__name__, str(exc), retryable=False, started=started), exc
            return self._report(dispatch, Outcome.succeeded, result=payload, started=started), None
        except StepFailed as exc:
            error = exc
            failed = self._fail(
                dispatch,
                type(exc).__name__,
                str(exc),
                retryable=exc.retryable,
                started=started,
                retry_after_ms=None if exc.retry_after is None else int(exc.retry_after * 1000),
            )
            return failed, exc
        except self.config.timeout_errors as exc:
            error = exc
            timed_out = self._fail(
                dispatch,
                "Timeout",
                f"step ran past its timeout of {dispatch.timeout_ms} ms",
                retryable=True,
                started=started,
            )
            return timed_out, exc
        except Exception as exc:
            error = exc
            log.exception("handler %s failed (saga %s, attempt %d)", handler.name, dispatch.saga_id, dispatch.attempt)
            return self._fail(dispatch, type(exc).__name__, str(exc) or repr(exc), retryable=True, started=started), exc
        finally:
            self.hooks.after(ctx, result, error)

    def _store(
        self,
        dispatch: StepDispatch,
        owner: str,
        report: StepReport,
        *,
        took_mutex: bool = False,
        lost: str | None = None,
        error: BaseException | None = None,
    ) -> Delivery:
        """Store the outcome and let go of claim and lease. A success is stored only while both
        are still ours (or lapsed with nobody taking the step meanwhile), checked by Redis in the
        same step: a renewal can fail or come late. Returns the report stored (with the
        handler's ``error``, if that report is its failure), to publish unless it was pushed with
        the outcome."""
        fallback = None
        if report.outcome is Outcome.succeeded:
            fallback = self._fail(
                dispatch,
                "LeaseLost",
                f"{lost or 'the run claim or the mutex lease'} was taken by another delivery while the handler "
                "ran; not reporting a success",
                retryable=True,
                started=report.started_at,
            )
            if lost:
                report, fallback = fallback, None
        push = None
        if self.render_report is not None:
            queue_key, message = self.render_report(report.model_dump(mode="json"))
            push = ReportPush(
                queue_key,
                message,
                fallback=self.render_report(fallback.model_dump(mode="json"))[1] if fallback else None,
                copies=self.config.report_copies,
            )
        found_lost = self.store.finish(
            dispatch.idempotence_key,
            dispatch.saga_id,
            dispatch.attempt,
            owner,
            result_json=json.dumps(report.result) if report.outcome is Outcome.succeeded else None,
            report_json=report.model_dump_json(),
            mutex_scope=dispatch.mutex_scope if took_mutex else None,
            fencing_token=dispatch.fencing_token,
            fallback_json=fallback.model_dump_json() if fallback else None,
            push=push,
        )
        stored = fallback if found_lost and fallback is not None else report
        return Delivery([] if push is not None else [stored], stored, error if stored is report else None)

    def _report(
        self,
        dispatch: StepDispatch,
        outcome: Outcome,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        retryable: bool = True,
        retry_after_ms: int | None = None,
        started: datetime | None = None,
    ) -> StepReport:
        return StepReport(
            saga_id=dispatch.saga_id,
            step_index=dispatch.step_index,
            phase=dispatch.phase,
            attempt=dispatch.attempt,
            outcome=outcome,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            error=error,
            result=result,
            worker=self.config.worker,
            fencing_token=dispatch.fencing_token,
            started_at=started,
            finished_at=self.clock(),
            member=dispatch.member,
            traceparent=tracing.current_traceparent(),
        )

    def _fail(
        self,
        dispatch: StepDispatch,
        kind: str,
        message: str,
        *,
        retryable: bool,
        started: datetime | None = None,
        retry_after_ms: int | None = None,
    ) -> StepReport:
        return self._report(
            dispatch,
            Outcome.failed,
            error=ErrorInfo(type=kind, message=message),
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            started=started,
        )


def _run_span(dispatch: StepDispatch, worker: str) -> AbstractContextManager[Span | None]:
    """The span of one delivery, after the orchestrator's span that dispatched it; a compensation's
    links to the forward attempt's span it undoes. Its report carries it to the coordinator."""
    if not tracing.enabled():
        return nullcontext()
    forward = dispatch.phase is Phase.forward
    attributes: dict[str, str | int] = {
        "workyard.saga_id": dispatch.saga_id,
        "workyard.step": dispatch.step,
        "workyard.step_index": dispatch.step_index,
        "workyard.phase": dispatch.phase.value,
        "workyard.attempt": dispatch.attempt,
        "workyard.handler": dispatch.handler,
        "workyard.worker": worker,
    }
    if dispatch.member is not None:
        attributes["workyard.member"] = dispatch.member
    return tracing.span(
        "step run" if forward else "compensation run",
        kind=tracing.CONSUMER,
        parent=dispatch.traceparent,
        links=[dispatch.undoes],
        attributes=attributes,
    )


def _describe(span: Span, delivery: Delivery) -> None:
    """What became of the delivery, on its span."""
    outcome = delivery.outcome
    if isinstance(outcome, StepReport):
        span.set_attribute("workyard.outcome", outcome.outcome.value)
        if outcome.error is not None:
            span.set_attribute("workyard.error", f"{outcome.error.type}: {outcome.error.message}"[:1000])
    if delivery.dropped is not None:
        span.set_attribute("workyard.dropped", delivery.dropped)
    if delivery.error is not None:
        span.record_exception(delivery.error)
        span.set_status(Status(StatusCode.ERROR, type(delivery.error).__name__))


def delivery_owner(worker: str) -> str:
    """What one delivery holds its run claim and leases as: its worker's name and a random part
    (two deliveries on one worker are two owners)."""
    return f"{worker}:{uuid.uuid4().hex}"


def owner_worker(owner: str) -> str | None:
    """The worker named in a delivery's owner (see :func:`delivery_owner`); None if none is."""
    worker, sep, random = owner.rpartition(":")
    if not sep or not worker or len(random) != 32 or not all(c in "0123456789abcdef" for c in random):
        return None
    return worker


def _identity(dispatch: StepDispatch) -> dict[str, Any]:
    return {
        "saga_id": dispatch.saga_id,
        "step_index": dispatch.step_index,
        "phase": dispatch.phase,
        "attempt": dispatch.attempt,
        "fencing_token": dispatch.fencing_token,
        "member": dispatch.member,
    }
