"""Where a paced saga's time goes: its timeline, as workyard stores it, cut into segments.

From what every run stores (no production change needed):

- ``saga_runs.created_at``: the submit's clock, read inside its transaction (after SQLite's write
  lock was taken), before the commit and the publish;
- ``step_attempts.dispatched_at``: the clock of the transaction that dispatched the attempt,
  read when the coordinator's batch began (``Coordinator.handle``), before it locked anything;
  for the first step, the submit's;
- ``step_attempts.started_at`` / ``finished_at``: the worker's clock around the handler, after
  the delivery was decoded and its Redis claim taken, and before the outcome was stored in Redis
  with its report pushed;
- ``saga_runs.finished_at``: the clock of the batch that applied the last report, again read when
  the batch began.

So "report → applied" runs from the handler's end to the start of the batch that applied its
report (storing the outcome, the report's trip, the consumer's wait for more reports), and
"applied → next start" holds the batch's whole transaction, its commit, the publish, the trip to
the worker and the worker's prelude: stored data cannot tell them apart. Celery's task events
can, and a traced run captures them: ``task-sent`` when a dispatch is published (by the submitter
or the batch), ``task-received`` in the worker's main process, ``task-started`` when a pool process
took it, ``task-succeeded`` when the main process heard the pool process was done. That splits
"applied → next start" into the batch up to the publish, the broker, the pool hand-off and the
worker's prelude; and "report → applied" into the worker storing the outcome with its report and
handing back to its main process, and the wait from there until the batch that applies it begins
(the report was queued a little before ``task-succeeded``: its real wait is, if anything, longer).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from bench.support import pct
from models.enums import Outcome, Phase, SagaState
from models.tables import SagaRun, StepAttempt
from orchestrator.storage.db import SessionFactory

# The IN lists of one query (SQLite binds each id as a parameter).
CHUNK = 500


@dataclass
class StepTimes:
    """One step's succeeded forward attempt: when it was dispatched, started and finished (epoch s)."""

    task_id: str
    dispatched: float
    started: float
    finished: float


@dataclass
class SagaTimes:
    """One paced saga's timeline (epoch seconds): due, submitted (created), finished (the batch that
    applied the last report began), seen by the client, and its steps in order."""

    due: float
    created: float
    finished: float
    seen: float
    steps: list[StepTimes] = field(default_factory=list)


def _epoch(value: datetime | None) -> float:
    assert value is not None
    return value.timestamp()


def load_saga_times(
    sessions: SessionFactory, ids: Sequence[str], due: Sequence[float], seen: dict[str, float]
) -> list[SagaTimes]:
    """The timelines of the sagas ``ids`` (due at ``due``) that completed and were seen, read back
    from the saga runs and their attempts."""
    runs: dict[str, tuple[datetime, datetime | None, SagaState]] = {}
    attempts: dict[str, dict[int, StepAttempt]] = {}
    with sessions() as session:
        for i in range(0, len(ids), CHUNK):
            chunk = list(ids[i : i + CHUNK])
            for row in session.execute(
                select(SagaRun.id, SagaRun.created_at, SagaRun.finished_at, SagaRun.state).where(SagaRun.id.in_(chunk))
            ):
                runs[row.id] = (row.created_at, row.finished_at, row.state)
            for attempt in session.scalars(
                select(StepAttempt).where(
                    StepAttempt.saga_id.in_(chunk),
                    StepAttempt.phase == Phase.forward,
                    StepAttempt.outcome == Outcome.succeeded,
                )
            ):
                attempts.setdefault(attempt.saga_id, {})[attempt.step_index] = attempt
    out = []
    for saga_id, at in zip(ids, due, strict=True):
        run = runs.get(saga_id)
        if run is None or run[2] is not SagaState.completed or saga_id not in seen:
            continue
        steps = attempts.get(saga_id, {})
        out.append(
            SagaTimes(
                due=at,
                created=_epoch(run[0]),
                finished=_epoch(run[1]),
                seen=seen[saga_id],
                steps=[
                    StepTimes(
                        # Workyard's Celery task id of the attempt (orchestrator.sagas.keys.task_id).
                        task_id=f"{saga_id}-{index}-f{a.attempt}",
                        dispatched=_epoch(a.dispatched_at),
                        started=_epoch(a.started_at),
                        finished=_epoch(a.finished_at),
                    )
                    for index, a in sorted(steps.items())
                ],
            )
        )
    return out


# What each segment is part of, for the sums at the end of a breakdown.
LATE = "submitter late or waiting for a lock"
DISPATCH = "dispatch → handler start (transaction, publish, broker, worker prelude)"
HANDLER = "handlers"
REPORT = "handler finish → the batch applying its report begins"
SEEN = "last batch began → seen (its transaction, commit, watcher)"


@dataclass(frozen=True)
class Segment:
    """A segment of a saga's time: its name in a breakdown and the group it adds to."""

    name: str
    group: str


def segment_names(steps: Sequence[str], *, split: bool = False) -> list[Segment]:
    """The segments of a saga with these steps, in the order :func:`segments` measures them."""
    names = [Segment("due → submit (submitter late, submit's lock wait)", LATE)]
    for index, step in enumerate(steps):
        came_from = "submit" if index == 0 else "applied"
        if split:
            did = "submit's commit, publish" if index == 0 else "batch's transaction, commit, publish"
            names += [
                Segment(f"{came_from} → {step} published ({did})", DISPATCH),
                Segment(f"{step} published → worker received (broker)", DISPATCH),
                Segment(f"{step} received → a pool process took it", DISPATCH),
                Segment(f"{step} pool process → handler start (decode, Redis claim)", DISPATCH),
                Segment(f"{step} handler", HANDLER),
                Segment(f"{step} finish → worker done (outcome stored, report pushed)", REPORT),
                Segment(f"{step} worker done → batch began (report queued, consumer gathering)", REPORT),
            ]
        else:
            names += [
                Segment(f"{came_from} → {step} start", DISPATCH),
                Segment(f"{step} handler", HANDLER),
                Segment(f"{step} finish → report applied (store, report trip, batch wait)", REPORT),
            ]
    names.append(Segment("last applied → seen by client (batch's commit, watcher)", SEEN))
    return names


def segments(saga: SagaTimes, count: int, events: dict[str, dict[str, float]] | None = None) -> list[float]:
    """One saga's segments in seconds, in the order of :func:`segment_names` (``count`` of them);
    they add up to its latency (seen - due). With ``events``, the segments around each step's
    handler are split at the task events."""
    out = [saga.created - saga.due]
    previous_end = saga.created  # when the step was dispatched: the submit, then each applying batch
    for index, step in enumerate(saga.steps):
        applied = saga.steps[index + 1].dispatched if index + 1 < len(saga.steps) else saga.finished
        if events is None:
            out += [step.started - previous_end, step.finished - step.started, applied - step.finished]
        else:
            times = events[step.task_id]
            sent, received, pooled, done = (times[k] for k in EVENTS)
            out += [sent - previous_end, received - sent, pooled - received, step.started - pooled]
            out += [step.finished - step.started, done - step.finished, applied - done]
        previous_end = applied
    out.append(saga.seen - saga.finished)
    assert len(out) == count
    return out


# The task events a traced breakdown reads, in the order they happen to a task.
EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded")


def has_events(saga: SagaTimes, events: dict[str, dict[str, float]]) -> bool:
    return all(all(k in events.get(s.task_id, {}) for k in EVENTS) for s in saga.steps)


def print_breakdown(
    title: str,
    sagas: Iterable[SagaTimes],
    step_names: Sequence[str],
    events: dict[str, dict[str, float]] | None = None,
) -> None:
    """Print p50, p90 and mean per segment (ms), and each segment's share of the mean latency.
    Means add up to the mean latency; p50s need not add up to the p50 latency."""
    complete = [s for s in sagas if len(s.steps) == len(step_names)]
    if events is not None:
        complete = [s for s in complete if has_events(s, events)]
    if not complete:
        print(f"{title}: no complete timelines", flush=True)
        return
    names = segment_names(step_names, split=events is not None)
    columns = list(zip(*(segments(s, len(names), events) for s in complete), strict=True))
    latencies = [s.seen - s.due for s in complete]
    total = statistics.fmean(latencies)
    print(f"{title} ({len(complete)} sagas; ms)", flush=True)
    print(f"  {'segment':<76} {'p50':>7} {'p90':>7} {'mean':>7} {'share':>6}")
    groups: dict[str, float] = {}
    for segment, values in zip(names, columns, strict=True):
        mean = statistics.fmean(values)
        groups[segment.group] = groups.get(segment.group, 0.0) + mean
        print(
            f"  {segment.name:<76} {pct(values, 0.5) * 1000:7.2f} {pct(values, 0.9) * 1000:7.2f} "
            f"{mean * 1000:7.2f} {mean / total * 100:5.1f}%"
        )
    print(
        f"  {'latency (due → seen)':<76} {pct(latencies, 0.5) * 1000:7.2f} {pct(latencies, 0.9) * 1000:7.2f} "
        f"{total * 1000:7.2f} 100.0%"
    )
    for group, mean in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {'sum of means: ' + group:<76} {'':>7} {'':>7} {mean * 1000:7.2f} {mean / total * 100:5.1f}%")
    sys.stdout.flush()


def print_broker_wait_by_credit(title: str, events: dict[str, dict[str, float]], prefetch: int) -> None:
    """Split "published → worker received" by what the worker held when the dispatch was published.

    A worker with acks late and a prefetch limit of ``prefetch`` takes no message while it holds
    that many (received, not yet done): then a dispatch waits in the queue for a slot, and the
    wait is the worker's capacity (or the host's CPU), not its consumer. A dispatch published while
    the worker held fewer should be received within a broker round trip; a long wait there is the
    consumer's own."""
    held_spans = [
        (t["task-received"], t["task-succeeded"])
        for t in events.values()
        if "task-received" in t and "task-succeeded" in t
    ]
    free: list[float] = []
    full: list[float] = []
    for times in events.values():
        if not all(k in times for k in ("task-sent", "task-received")):
            continue
        sent = times["task-sent"]
        held = sum(1 for received, done in held_spans if received <= sent < done)
        (full if held >= prefetch else free).append(times["task-received"] - sent)
    print(f"{title} (ms)", flush=True)
    for label, values in (
        (f"worker held fewer than {prefetch} (a slot free)", free),
        (f"worker held {prefetch} (waits for a slot)", full),
    ):
        if values:
            print(
                f"  {label:<48} n {len(values):5d}  p50 {pct(values, 0.5) * 1000:7.2f}  "
                f"p90 {pct(values, 0.9) * 1000:7.2f}  p99 {pct(values, 0.99) * 1000:7.2f}",
                flush=True,
            )
        else:
            print(f"  {label:<48} n     0", flush=True)
