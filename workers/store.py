"""Dedup results, run claims and mutex leases in Redis, each change one Lua script."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from config import keys

log = logging.getLogger(__name__)
T = TypeVar("T")

# Decide what a delivery of a dispatch should do, atomically.
# A dispatch the worker's clock finds past its deadline is dropped only if Redis's clock agrees:
# one clock shared by every worker, so a worker whose own clock runs ahead does not drop fresh
# work (and its saga does not wait for the attempt's deadline).
# KEYS[1] stored result of the idempotence key   KEYS[2] stored report of this attempt
# KEYS[3] "seen" marker of this attempt          KEYS[4] run claim of the idempotence key
# ARGV[1] claim owner   ARGV[2] claim TTL (ms)   ARGV[3] seen-marker TTL (s)
# ARGV[4] the dispatch's deadline, ms since the epoch, to check ('' = the worker's clock finds it
# not past: no check)
_BEGIN = """
if ARGV[4] ~= '' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[4]) then
    return {'expired', ''}
  end
end
local result = redis.call('GET', KEYS[1])
if result then return {'result', result} end
local report = redis.call('GET', KEYS[2])
if report then return {'report', report} end
local claim = redis.call('GET', KEYS[4])
-- Ours: this very call ran before and its answer was lost with the connection. It answered
-- 'run' if it set the seen marker, 'lost' if the marker was another delivery's.
-- 'lost' comes with the seen marker: the owner of the delivery that began the attempt and died.
if claim == ARGV[1] then
  local seen = redis.call('GET', KEYS[3])
  if seen == ARGV[1] then return {'run', ''} end
  return {'lost', seen or ''}
end
if claim then return {'busy', ''} end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[3]) then return {'run', ''} end
return {'lost', redis.call('GET', KEYS[3]) or ''}
"""

# Store an attempt's outcome and give up our claim and leases, in one round trip; and, where the
# broker is this same Redis, send the report to the orchestrator's queue in the same step.
# A claim or lease still counts as ours if it lapsed (a stall longer than its TTL: a GC or VM
# pause, SIGSTOP) and nobody took the step meanwhile: the run claim while no other delivery
# stored a result for the key, a mutex lease while no step took the scope with a later fencing
# token. Then the finished work is kept rather than run again. If someone else did take it, the
# attempt must not count as a success: the fallback report (a retryable failure) is stored (and
# sent) instead of the result.
# KEYS[1] stored result   KEYS[2] stored report   KEYS[3] the orchestrator's queue (list)
# KEYS[4] run claim   KEYS[5..] pairs of (mutex lease, the scope's highest fencing token)
# ARGV[1] owner   ARGV[2] result JSON ('' unless the attempt succeeded)   ARGV[3] report JSON
# ARGV[4] TTL (s)   ARGV[5] fallback report JSON ('' = none)
# ARGV[6] the report as the broker message to push ('' = the caller publishes it)
# ARGV[7] the fallback report as a broker message   ARGV[8] how many copies to push
# ARGV[9] the step's fencing token ('' = none)
# Returns 0 when claim and leases were ours, else which was not: 1 the claim, 2.. the leases.
_FINISH = """
-- Already done by this very call, whose answer was lost with the connection: do not push again.
if redis.call('GET', KEYS[2]) == ARGV[3] then return 0 end
local lost = 0
local claim = redis.call('GET', KEYS[4])
if (claim and claim ~= ARGV[1]) or redis.call('EXISTS', KEYS[1]) == 1 then lost = 1 end
if lost == 0 then
  for i = 5, #KEYS, 2 do
    local holder = redis.call('GET', KEYS[i])
    local last = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if (holder and holder ~= ARGV[1]) or last > (tonumber(ARGV[9]) or 0) then
      lost = 2 + (i - 5) / 2
      break
    end
  end
end
local message = ARGV[6]
if lost > 0 and ARGV[5] ~= '' then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
  message = ARGV[7]
else
  if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4]) end
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
end
if claim == ARGV[1] then redis.call('DEL', KEYS[4]) end
for i = 5, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
if message ~= '' then
  for _ = 1, tonumber(ARGV[8]) do redis.call('LPUSH', KEYS[3], message) end
end
return lost
"""

# Take the mutex lease of a scope, refusing a fencing token not above the last one granted.
# KEYS[1] lease   KEYS[2] highest token granted on the scope
# ARGV[1] owner   ARGV[2] lease TTL (ms)   ARGV[3] fencing token
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if not holder and tonumber(ARGV[3]) <= last then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""

# Extend a key's TTL while we still own it; take it back if it lapsed and nobody took the step
# meanwhile (the process stalled past the TTL). 1 renewed, 2 taken back, 0 someone else took it.
# Who took it meanwhile is told by the guard: for a run claim, a result stored under the key
# (KEYS[2] exists, ARGV[3] 'absent'); for a mutex lease, a later fencing token granted on the
# scope (KEYS[2] above the token in ARGV[3]). The same rules decide again when the step finishes.
# KEYS[1] key, KEYS[2] guard (optional); ARGV[1] owner, ARGV[2] TTL (ms), ARGV[3] guard rule
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
if #KEYS > 1 then
  if ARGV[3] == 'absent' then
    if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
  elseif tonumber(redis.call('GET', KEYS[2]) or '0') > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
"""

# Delete a key only while we still own it.  KEYS[1] key; ARGV[1] owner
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Begin(StrEnum):
    """What a delivery of a dispatch should do, as the idempotence check in Redis decides it."""

    run = "run"  # first delivery: run the handler
    result = "result"  # the key already succeeded: replay its result
    report = "report"  # this attempt already ended: replay its report
    busy = "busy"  # another delivery is running it right now
    lost = "lost"  # delivered before, and whoever had it died
    expired = "expired"  # past its deadline by the worker's clock and by Redis's: the orchestrator moved on


class Renew(IntEnum):
    """The answer to renewing a claim or lease."""

    taken = 0  # someone else holds it: the step has lost it
    renewed = 1
    retaken = 2  # it had lapsed (we stalled past its TTL) and nobody had taken it


@dataclass(frozen=True)
class Guard:
    """What shows that someone else took a step whose claim or lease lapsed (see ``_RENEW``)."""

    key: str
    rule: str  # "absent": the key must not exist; else a fencing token the key must not exceed

    @staticmethod
    def claim(idempotence_key: str) -> Guard:
        return Guard(keys.step_result(idempotence_key), "absent")

    @staticmethod
    def lease(scope: str, token: int) -> Guard:
        return Guard(keys.fence(scope), str(token))


class Acquire(StrEnum):
    """The answer to a mutex lease request: granted, held by another step, or past the fencing token asked for."""

    granted = "granted"
    busy = "busy"
    stale = "stale"


@dataclass(frozen=True)
class ReportPush:
    """A report rendered as the broker message to push to ``queue_key`` with the outcome, and
    its fallback (the LeaseLost failure pushed instead if a claim or lease was lost)."""

    queue_key: str
    message: str
    fallback: str | None = None
    copies: int = 1


@dataclass(frozen=True)
class BeginAnswer:
    """The idempotence check's decision, with the stored result or report to replay where there
    is one (``lost``: the owner of the delivery that began the attempt and died)."""

    decision: Begin
    stored: str | None = None


# A Redis restart, a failover or a dropped connection lasts seconds. A store call waits it out
# rather than raise: the step's outcome would be lost with the exception (Celery acknowledges a
# failed task, so its dispatch would be gone too). The scripts are safe to run again.
OUTAGE_S = 30.0
_OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


def _patient(call: Callable[[], T]) -> T:
    retrying = Retrying(
        retry=retry_if_exception_type(_OUTAGE_ERRORS),
        stop=stop_after_delay(OUTAGE_S),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        before_sleep=lambda state: log.warning(
            "the step store is unreachable (%s); trying again", state.outcome.exception() if state.outcome else ""
        ),
        reraise=True,
    )
    return retrying(call)


class StepStore:
    """The worker's view of Redis; every method is one round trip (more only while Redis is away)."""

    def __init__(self, client: redis.Redis, *, claim_ttl_ms: int, dedup_ttl_s: int):
        self.client = client
        self.claim_ttl_ms = claim_ttl_ms
        self.dedup_ttl_s = dedup_ttl_s
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def begin(
        self, idempotence_key: str, saga_id: str, attempt: int, owner: str, *, expired_at: datetime | None = None
    ) -> BeginAnswer:
        """Decide what this delivery does. ``expired_at``: the dispatch's deadline, given when
        the worker's clock finds it past; the answer is ``expired`` if Redis's clock agrees."""
        script_keys = [
            keys.step_result(idempotence_key),
            keys.attempt_report(idempotence_key, saga_id, attempt),
            keys.attempt_seen(idempotence_key, saga_id, attempt),
            keys.run_claim(idempotence_key),
        ]
        # The seen marker must not outlive the report it stands for.
        args: list[str | int] = [
            owner,
            self.claim_ttl_ms,
            self.dedup_ttl_s,
            "" if expired_at is None else int(expired_at.timestamp() * 1000),
        ]
        reply: Any = _patient(lambda: self._begin(keys=script_keys, args=args))
        decision, stored = (_text(part) for part in reply)
        return BeginAnswer(Begin(decision), stored or None)

    def finish(
        self,
        idempotence_key: str,
        saga_id: str,
        attempt: int,
        owner: str,
        *,
        result_json: str | None,
        report_json: str,
        mutex_scope: str | None = None,
        fencing_token: int | None = None,
        fallback_json: str | None = None,
        push: ReportPush | None = None,
    ) -> str | None:
        """Store the outcome, release claim and lease, and push the report if ``push`` says how;
        returns the key found taken by someone else, if any (then ``fallback_json`` was stored
        instead of the result, and the fallback pushed). A claim or lease that merely lapsed,
        with nobody taking the step meanwhile, still counts as ours (see ``_FINISH``)."""
        claim = keys.run_claim(idempotence_key)
        lease_keys = [keys.mutex_lease(mutex_scope), keys.fence(mutex_scope)] if mutex_scope else []
        report_key = keys.attempt_report(idempotence_key, saga_id, attempt)
        script_keys = [
            keys.step_result(idempotence_key),
            report_key,
            push.queue_key if push else report_key,  # a key either way; used only with a push
            claim,
            *lease_keys,
        ]
        args: list[str | int] = [
            owner,
            result_json or "",
            report_json,
            self.dedup_ttl_s,
            fallback_json or "",
            push.message if push else "",
            (push.fallback or "") if push else "",
            push.copies if push else 0,
            "" if fencing_token is None else fencing_token,
        ]
        lost = int(_patient(lambda: self._finish(keys=script_keys, args=args)))
        if not lost:
            return None
        return claim if lost == 1 else lease_keys[0]

    def acquire(self, scope: str, owner: str, ttl_ms: int, token: int) -> Acquire:
        script_keys = [keys.mutex_lease(scope), keys.fence(scope)]
        reply = int(_patient(lambda: self._acquire(keys=script_keys, args=[owner, ttl_ms, token])))
        return {1: Acquire.granted, 0: Acquire.busy, -1: Acquire.stale}[reply]

    def renew(self, key: str, owner: str, ttl_ms: int, guard: Guard | None = None) -> Renew:
        """Extend ``key``, or take it back if it lapsed and ``guard`` shows nobody took the step."""
        if guard is None:
            return Renew(int(self._renew(keys=[key], args=[owner, ttl_ms])))
        return Renew(int(self._renew(keys=[key, guard.key], args=[owner, ttl_ms, guard.rule])))

    def release(self, key: str, owner: str) -> None:
        _patient(lambda: self._release(keys=[key], args=[owner]))


def stored_reports(client: redis.Redis, attempts: Sequence[tuple[str, str, int]]) -> list[str | None]:
    """The final reports workers stored for ``(idempotence_key, saga_id, attempt)``, in order
    (None where an attempt has none yet), in one round trip."""
    if not attempts:
        return []
    found: list[Any] = client.mget([keys.attempt_report(k, saga_id, n) for k, saga_id, n in attempts])
    return [None if raw is None else _text(raw) for raw in found]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)
