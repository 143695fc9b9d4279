"""The worker runtime against a real Redis, without Celery: dedup, claims, leases, replays.

Each test runs twice: with reports returned for the caller to publish (a broker of its own), and
pushed to the orchestrator's queue by the script that stores the outcome (broker and store on one
Redis), read back from the queue here."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from config import keys
from config.settings import Settings
from models.enums import Outcome
from models.messages import DeadLetterReport, StepReport
from tests.support import RedisTarget, consistently, eventually, kombu_envelope
from workers import StepContext, step
from workers.broker.reports import ReportRenderer, report_queue
from workers.celery.app import create_app
from workers.runtime import RuntimeConfig, StepRuntime
from workers.store import Guard, Renew, StepStore

CALLS: dict[str, int] = {}


class Cmd(BaseModel):
    tag: str
    sleep_ms: int = 0
    # What happens to the step's claim or lease while the handler runs, as a stall longer than
    # their TTLs would leave them: "claim"/"lease" lapse (nobody takes the step meanwhile);
    # "claim-taken"/"lease-taken" are taken by another delivery; "fence": another step took the
    # scope with a later fencing token and let it go again.
    lapse: str | None = None
    # The name of a built-in exception for the handler to raise.
    raises: str | None = None
    # Return something that cannot travel as JSON.
    not_json: bool = False


@step("rt_work", capability="rt")
def rt_work(ctx: StepContext, cmd: Cmd) -> dict[str, Any]:
    CALLS[cmd.tag] = CALLS.get(cmd.tag, 0) + 1
    if cmd.lapse is not None:
        lapse(cmd.lapse, ctx)
    time.sleep(cmd.sleep_ms / 1000)
    if cmd.raises is not None:
        raise {"ValueError": ValueError, "TypeError": TypeError}[cmd.raises](f"{cmd.tag} went wrong")
    if cmd.not_json:
        return {"tag": cmd.tag, "when": object()}
    return {"tag": cmd.tag}


def lapse(how: str, ctx: StepContext) -> None:
    client, claim = RUNTIME_REDIS[0], keys.run_claim(ctx.idempotence_key)
    scope = ctx.mutex_scope or "none"
    if how == "claim":
        client.delete(claim)
    elif how == "lease":
        client.delete(keys.mutex_lease(scope))
    elif how == "claim-taken":
        client.set(claim, "another-delivery", px=60_000)
    elif how == "lease-taken":
        client.set(keys.mutex_lease(scope), "another-step", px=60_000)
    else:  # "fence"
        client.delete(keys.mutex_lease(scope))
        client.set(keys.fence(scope), 10**6)


RUNTIME_REDIS: list[Any] = []
PUSHED: list[bool] = [False]
RENDERERS: list[ReportRenderer] = []


def make_runtime(target: RedisTarget, *, pushed: bool, copies: int = 1) -> StepRuntime:
    client = target.client()
    RUNTIME_REDIS[:] = [client]
    CALLS.clear()  # each test counts its own calls, in each mode
    PUSHED[0] = pushed
    render = None
    if pushed:
        settings = Settings(broker_url=target.broker_url, redis_url=target.redis_url)
        render = report_queue(create_app(settings).connection_for_write()).renderer(client)
        assert render is not None, "broker and store share this Redis: reports should go with the outcome"
        RENDERERS.append(render)
    store = StepStore(client, claim_ttl_ms=600, dedup_ttl_s=3600)
    config = RuntimeConfig(lease_ttl_ms=3000, lease_wait_ms=5000, worker="test-worker", report_copies=copies)
    return StepRuntime(store, config, render_report=render)


@pytest.fixture(autouse=True)
def _close_renderers() -> Iterator[None]:
    yield
    while RENDERERS:
        RENDERERS.pop().close()


@pytest.fixture(params=["published", "pushed"])
def runtime(request: pytest.FixtureRequest, clean_redis: RedisTarget) -> StepRuntime:
    return make_runtime(clean_redis, pushed=request.param == "pushed")


def pushed_reports() -> list[StepReport]:
    """Reports the store's script pushed to the orchestrator's queue, oldest first, taken off it."""
    reports = []
    while (raw := RUNTIME_REDIS[0].rpop(keys.ORCHESTRATOR_QUEUE)) is not None:
        envelope, body = kombu_envelope(raw)
        assert envelope["properties"]["delivery_info"]["routing_key"] == keys.ORCHESTRATOR_QUEUE
        reports.append(StepReport.model_validate_json(body))
    return reports


def dispatch(
    tag: str,
    *,
    saga_id: str | None = None,
    attempt: int = 1,
    key: str | None = None,
    scope: str | None = None,
    token: int | None = None,
    **cmd: Any,
) -> dict[str, Any]:
    saga_id = saga_id or uuid.uuid4().hex
    return {
        "saga_id": saga_id,
        "template": "t",
        "version": "1.0.0",
        "step_index": 0,
        "step": "work",
        "handler": "rt_work",
        "capability": "rt",
        "phase": "forward",
        "attempt": attempt,
        "idempotence_key": key or f"{saga_id}:work",
        "mutex_scope": scope,
        "fencing_token": token,
        "input": {"tag": tag, **cmd},
        "dispatched_at": datetime.now(UTC).isoformat(),
    }


def only_report(messages: list[Any]) -> StepReport:
    if PUSHED[0] and not messages:
        messages = pushed_reports()
    assert len(messages) == 1 and isinstance(messages[0], StepReport)
    return messages[0]


def test_a_duplicate_replays_the_result_without_calling_the_handler(runtime: StepRuntime) -> None:
    body = dispatch("dup")
    first, again = only_report(runtime.execute(body)), only_report(runtime.execute(body))
    assert first.outcome == again.outcome == Outcome.succeeded
    assert again.result == {"tag": "dup"}
    assert CALLS["dup"] == 1


def test_a_duplicate_arriving_while_the_first_runs_does_not_run_it_again(runtime: StepRuntime) -> None:
    body = dispatch("concurrent", sleep_ms=1500)  # longer than the claim's TTL: renewal must hold it
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(runtime.execute(body)))
    first.start()
    eventually(lambda: CALLS.get("concurrent"), what="the first delivery to be running the handler")
    second = runtime.execute(body)
    first.join()
    assert CALLS["concurrent"] == 1
    assert only_report(results[0]).outcome == Outcome.succeeded
    # The duplicate either waited and replayed the result, or saw a live owner and stood down.
    assert second == [] or only_report(second).outcome == Outcome.succeeded


def test_the_claim_stays_alive_while_a_step_waits_for_its_mutex(runtime: StepRuntime) -> None:
    scope = f"acct:{uuid.uuid4().hex[:6]}"
    client = RUNTIME_REDIS[0]
    client.set(keys.mutex_lease(scope), "someone-else", px=2000)  # held past the claim's 600 ms TTL
    body = dispatch("waiting", scope=scope, token=10)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(runtime.execute(body)))
    first.start()
    key, saga_id = body["idempotence_key"], body["saga_id"]
    seen, claim, report = keys.attempt_seen(key, saga_id, 1), keys.run_claim(key), keys.attempt_report(key, saga_id, 1)
    # Two claim TTLs (on Redis's clock: nothing to drive): without renewal the duplicate would see
    # the attempt as lost. From its begin (seen marker and claim, one script) to its end (report
    # stored and claim released, one script), the first delivery holds its claim.
    consistently(
        lambda: not client.exists(seen) or client.exists(claim, report),
        duration=1.2,
        what="the first delivery's renewed run claim",
    )
    duplicate = runtime.execute(body)
    first.join()
    assert all(r.outcome != Outcome.lost for r in duplicate if isinstance(r, StepReport))
    assert only_report(results[0]).outcome == Outcome.succeeded
    assert CALLS["waiting"] == 1


@pytest.mark.parametrize("lapse", ["claim-taken", "lease-taken", "fence"])
def test_a_step_whose_claim_or_lease_someone_else_took_is_not_reported_as_a_success(
    runtime: StepRuntime, lapse: str
) -> None:
    scope = f"acct:{uuid.uuid4().hex[:6]}"
    report = only_report(runtime.execute(dispatch(lapse, scope=scope, token=5, lapse=lapse)))
    assert report.outcome == Outcome.failed and report.retryable
    assert report.error is not None and report.error.type == "LeaseLost"
    assert RUNTIME_REDIS[0].get(keys.step_result(f"{report.saga_id}:work")) is None


@pytest.mark.parametrize("lapse", ["claim", "lease"])
def test_a_finished_step_whose_claim_lapsed_unclaimed_keeps_its_result(runtime: StepRuntime, lapse: str) -> None:
    """The worker stalled past its claim's TTL (a long GC or VM pause) and nobody took the step
    meanwhile: the work it finished is kept and reported, and a retry replays it."""
    scope = f"acct:{uuid.uuid4().hex[:6]}"
    body = dispatch(lapse, scope=scope, token=5, lapse=lapse)
    assert only_report(runtime.execute(body)).outcome == Outcome.succeeded
    retry = {**body, "attempt": 2}
    again = only_report(runtime.execute(retry))
    assert again.outcome == Outcome.succeeded and again.result == {"tag": lapse}
    assert CALLS[lapse] == 1


def test_a_delivery_that_found_the_stalled_one_lost_does_not_make_the_retry_run_again(runtime: StepRuntime) -> None:
    """The redelivered dispatch of a stalled worker reports the attempt lost; when the stalled
    worker finishes afterwards, before the retry began, the retry replays its result."""
    body = dispatch("stalled")
    store, client = runtime.store, RUNTIME_REDIS[0]
    store.begin(body["idempotence_key"], body["saga_id"], 1, "stalled-owner")  # began, then froze
    client.delete(keys.run_claim(body["idempotence_key"]))  # its claim lapsed
    assert only_report(runtime.execute(body)).outcome == Outcome.lost  # the redelivery
    # The stalled worker wakes up and finishes the work it had done.
    store.finish(
        body["idempotence_key"],
        body["saga_id"],
        1,
        "stalled-owner",
        result_json='{"tag": "stalled"}',
        report_json="{}",
    )
    assert client.get(keys.step_result(body["idempotence_key"])) is not None
    retry = only_report(runtime.execute({**body, "attempt": 2}))
    assert retry.outcome == Outcome.succeeded and retry.result == {"tag": "stalled"}
    assert "stalled" not in CALLS


def test_a_stale_fencing_token_is_deferred(runtime: StepRuntime) -> None:
    scope = f"acct:{uuid.uuid4().hex[:6]}"
    assert only_report(runtime.execute(dispatch("new", scope=scope, token=7))).outcome == Outcome.succeeded
    stale = only_report(runtime.execute(dispatch("old", scope=scope, token=6)))
    assert stale.outcome == Outcome.deferred and stale.error is not None
    assert stale.error.type == "StaleFencingToken"
    assert "old" not in CALLS


def test_a_redelivery_after_a_death_is_reported_lost(runtime: StepRuntime) -> None:
    body = dispatch("died")
    store = runtime.store
    # The first delivery began (claim and seen marker set) and its worker died: the claim expires.
    store.begin(body["idempotence_key"], body["saga_id"], 1, "dead-owner")
    claim = keys.run_claim(body["idempotence_key"])
    eventually(lambda: not RUNTIME_REDIS[0].exists(claim), what="the dead owner's claim to expire")
    report = only_report(runtime.execute(body))
    assert report.outcome == Outcome.lost
    assert "died" not in CALLS


def test_a_lost_attempt_names_the_worker_that_ran_it_not_the_one_that_noticed(runtime: StepRuntime) -> None:
    """The timeline must point at the worker that died (where to look), not at the one whose
    redelivery found the attempt lost."""
    body = dispatch("died-on")
    store = runtime.store
    store.begin(body["idempotence_key"], body["saga_id"], 1, "payments-1@host:" + uuid.uuid4().hex)
    claim = keys.run_claim(body["idempotence_key"])
    eventually(lambda: not RUNTIME_REDIS[0].exists(claim), what="the dead owner's claim to expire")
    report = only_report(runtime.execute(body))
    assert report.outcome == Outcome.lost
    assert report.worker == "payments-1@host"
    assert report.error is not None and "payments-1@host" in report.error.message
    assert "test-worker" in report.error.message  # who noticed, for the operator reading it
    # A replay of the stored report (a duplicate delivery) still names the worker that died.
    assert only_report(runtime.execute(body)).worker == "payments-1@host"


def test_sagas_sharing_an_idempotence_key_keep_their_own_identity(runtime: StepRuntime) -> None:
    shared = f"order:{uuid.uuid4().hex[:6]}"
    first = only_report(runtime.execute(dispatch("shared", key=shared)))
    other_saga = uuid.uuid4().hex
    second = only_report(runtime.execute(dispatch("shared", key=shared, saga_id=other_saga)))
    assert first.outcome == second.outcome == Outcome.succeeded
    assert second.saga_id == other_saga
    assert CALLS["shared"] == 1


@pytest.mark.parametrize("raises", ["ValueError", "TypeError"])
def test_a_handler_raising_a_value_or_type_error_may_be_retried(runtime: StepRuntime, raises: str) -> None:
    # Like any exception other than StepFailed: only the result's serialisation is final.
    report = only_report(runtime.execute(dispatch("raises", raises=raises)))
    assert report.outcome == Outcome.failed and report.retryable
    assert report.error is not None and report.error.type == raises and "raises went wrong" in report.error.message


def test_a_result_that_is_not_json_fails_for_good(runtime: StepRuntime) -> None:
    report = only_report(runtime.execute(dispatch("not-json", not_json=True)))
    assert report.outcome == Outcome.failed and not report.retryable
    assert report.error is not None and report.error.type == "TypeError"
    assert CALLS["not-json"] == 1


def test_a_malformed_dispatch_becomes_a_dead_letter(runtime: StepRuntime) -> None:
    (letter,) = runtime.execute({"saga_id": 3})
    assert isinstance(letter, DeadLetterReport) and letter.reason.startswith("malformed step dispatch")


def test_a_dispatch_past_its_deadline_is_dropped_unrun(runtime: StepRuntime) -> None:
    body = dispatch("late")
    body["expires_at"] = "2000-01-01T00:00:00+00:00"
    assert runtime.execute(body) == []
    assert "late" not in CALLS


def shifted(runtime: StepRuntime, by: timedelta) -> StepRuntime:
    """The same runtime on a worker whose wall clock is off by ``by``."""
    return StepRuntime(
        runtime.store, runtime.config, render_report=runtime.render_report, clock=lambda: datetime.now(UTC) + by
    )


def test_a_worker_whose_clock_runs_ahead_still_runs_fresh_dispatches(runtime: StepRuntime) -> None:
    ahead = shifted(runtime, timedelta(hours=1))
    body = dispatch("ahead")
    body["expires_at"] = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()  # past, by the worker's clock
    reports = ahead.execute(body) or pushed_reports()
    assert [r.outcome for r in reports if isinstance(r, StepReport)] == [Outcome.succeeded]
    assert CALLS["ahead"] == 1


def test_a_dispatch_past_its_deadline_by_both_clocks_is_dropped(runtime: StepRuntime) -> None:
    ahead = shifted(runtime, timedelta(hours=1))
    body = dispatch("stale")
    body["expires_at"] = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    assert ahead.execute(body) == []
    assert "stale" not in CALLS and pushed_reports() == []


def test_a_worker_whose_clock_runs_behind_runs_a_stale_dispatch(runtime: StepRuntime) -> None:
    """The price of never dropping on one clock's word: wasted work, not a stalled saga (its
    report is dropped as stale by the orchestrator)."""
    behind = shifted(runtime, -timedelta(hours=1))
    body = dispatch("behind")
    body["expires_at"] = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    reports = behind.execute(body) or pushed_reports()
    assert [r.outcome for r in reports if isinstance(r, StepReport)] == [Outcome.succeeded]


def test_a_report_pushed_with_its_outcome_goes_out_as_often_as_told(clean_redis: RedisTarget) -> None:
    runtime = make_runtime(clean_redis, pushed=True, copies=2)  # the duplicate-delivery fault setting
    assert runtime.execute(dispatch("twice")) == []
    first, second = pushed_reports()
    assert first == second and first.outcome == Outcome.succeeded and first.result == {"tag": "twice"}


def test_a_lapsed_claim_or_lease_is_taken_back_only_if_nobody_took_the_step(clean_redis: RedisTarget) -> None:
    client = clean_redis.client()
    store = StepStore(client, claim_ttl_ms=600, dedup_ttl_s=3600)
    key, scope = f"k-{uuid.uuid4().hex[:6]}", f"acct:{uuid.uuid4().hex[:6]}"
    claim, lease = keys.run_claim(key), keys.mutex_lease(scope)
    # Lapsed, and nobody took the step: taken back.
    assert store.renew(claim, "me", 600, Guard.claim(key)) is Renew.retaken
    client.set(keys.fence(scope), 5)
    assert store.renew(lease, "me", 600, Guard.lease(scope, 5)) is Renew.retaken
    # Lapsed, and someone else finished the step (a result) or took the scope (a later token).
    client.delete(claim, lease)
    client.set(keys.step_result(key), "{}")
    assert store.renew(claim, "me", 600, Guard.claim(key)) is Renew.taken
    client.set(keys.fence(scope), 6)
    assert store.renew(lease, "me", 600, Guard.lease(scope, 5)) is Renew.taken
    assert not client.exists(claim, lease)
