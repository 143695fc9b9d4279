"""Concurrent claims: N claimers draining one queue with ``claim_next``, on PostgreSQL (or SQLite).

    python bench/claims.py [--items 5000] [--claimers 50] [--database-url URL] [--keep]
    python bench/claims.py --sqlite

A fresh PostgreSQL schema ``bench_cl_<random>`` on the database named by --database-url (or
WORKYARD_DATABASE_URL), migrated to head, gets --items open, unassigned tasks offered to agents
(``{offer_type: 'agent'}``) in one tenant, and PostgreSQL's statistics are brought up to date
(``ANALYZE``, as autovacuum would after such a load). Then --claimers threads, as the API's
request threads do, call claim-next until it finds nothing, through the API's own path, in a
process settled as the API's is before it serves (``config.heap``): the process's claim
batcher (``orchestrator/work/claim_batches.py``, with the server's default
settings unless --transactions / --batch-max say otherwise, and with the server's default stall
clock, WORKYARD_WORK_STALL_AFTER_S, armed by every claim as the API's claims arm it, unless
--without-stall), which runs a few claim transactions at once, each claiming for every call
waiting. Prints claims/s, p50/p99 claim latency, the CPU a claim costs (the claimers' Python
process; on PostgreSQL also their backends, read from /proc when the server is local), and
checks that every item was claimed exactly once (by the claimers' own tally and by the audit
trail). The schema (or SQLite file) is dropped unless --keep. It ends with
``claims per second at 50 claimers: N``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, delete, func, insert, select, text  # noqa: E402

from bench.support import (  # noqa: E402
    DEFAULT_DATABASE_URL,
    PRIORITIES,
    log,
    open_task_row,
    pct,
    proc_cpu_s,
    scratch_database,
)
from config import heap  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.principal import Principal, PrincipalType  # noqa: E402
from models.work_tables import EVENTS, WORK_ITEMS, WorkItem, WorkItemEvent  # noqa: E402
from orchestrator.storage.db import make_engine, make_session_factory  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.work.claim_batches import ClaimBatcher  # noqa: E402

TENANT = "acme"
BATCH = 1_000


def claims_engine(url: str, claimers: int) -> Engine:
    """workyard's engine, with a connection for every claimer (make_engine's PostgreSQL pool holds
    15), so that the pool is never what claimers wait for, handed out most recently used first.

    The claim batcher uses at most --transactions connections at once. From a first-in first-out
    pool of 50 its few hundred transactions went each to the connection idle longest: every one
    of the 50 backends prepared and planned the claim statement and loaded its catalog caches
    for a handful of batches (about 0.7 ms of the backends' CPU a claim, measured). A long-running
    API process's few pooled connections have all done that long since; so have these."""
    return make_engine(url, pool_size=claimers, max_overflow=0, pool_use_lifo=True)


def seed(engine: Engine, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=1)
    rows: list[dict[str, Any]] = []
    for n in range(count):
        created = start + timedelta(milliseconds=n)
        item_id = f"WI-ACME-TASK-{created:%Y%m%d}-{rng.getrandbits(40):010X}"
        rows.append(
            open_task_row(
                item_id,
                tenant=TENANT,
                title=f"claimable {n}",
                priority=PRIORITIES[rng.randrange(len(PRIORITIES))],
                created=created,
                description="seeded by bench/claims.py",
                offer_type="agent",
            )
        )
    with engine.begin() as conn:
        for first in range(0, len(rows), BATCH):
            conn.execute(insert(WORK_ITEMS), rows[first : first + BATCH])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            # What autovacuum does within a minute of a bulk load: without statistics the
            # planner takes the freshly filled table for empty and walks the wrong index for
            # the assigned-to-me and lapsed-lease probes (milliseconds a claim, not microseconds).
            conn.execute(text("ANALYZE"))
    return [r["id"] for r in rows]


def commit_floor(engine: Engine, rounds: int = 200) -> list[float]:
    """Latency of a one-row INSERT + COMMIT on one connection: what a durable commit costs here."""
    latencies = []
    with engine.connect() as conn:
        for _ in range(rounds):
            started = time.perf_counter()
            conn.execute(
                insert(EVENTS).values(item_id="bench-floor", tenant=TENANT, action="floor", actor="bench", details={})
            )
            conn.commit()
            latencies.append(time.perf_counter() - started)
        conn.execute(delete(EVENTS).where(EVENTS.c.item_id == "bench-floor"))
        conn.commit()
    return latencies


def agent(n: int) -> Principal:
    return Principal(
        type=PrincipalType.agent,
        id=f"claimer-{n:02d}",
        tenant=TENANT,
        scopes=frozenset({"work:read", "work:claim"}),
    )


@dataclass
class Claimer:
    """One claimer thread's tally: the items it claimed, each claim's latency, when it ran dry, and what failed it."""

    principal: Principal
    claimed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    finished: float = 0.0
    error: BaseException | None = None


@dataclass
class Cpu:
    """CPU seconds the run took: the claimers' Python process, and their PostgreSQL backends."""

    python_s: float = 0.0
    database_s: float | None = None


def backend_pids(engine: Engine, claimers: int) -> list[int]:
    """Open the pool's every connection (its size is the number of claimers) and name their
    PostgreSQL backends, whose CPU is then read from /proc; none on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    connections = [engine.connect() for _ in range(claimers)]
    try:
        return [int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()) for c in connections]
    finally:
        for c in connections:
            c.close()


def backends_cpu_s(pids: list[int]) -> float | None:
    readings = [proc_cpu_s(pid) for pid in pids]
    return sum(r for r in readings if r is not None) if pids and None not in readings else None


def run_claimers(
    engine: Engine, claimers: int, total: int, transactions: int, batch_max: int, stall_after_s: float | None
) -> tuple[list[Claimer], float, float, Cpu]:
    batcher = ClaimBatcher(make_session_factory(engine), transactions=transactions, batch_max=batch_max)
    # As the API process does once started, before it serves (its lifespan).
    heap.settle(heap.BATCH_THRESHOLDS)
    pids = backend_pids(engine, claimers)
    workers = [Claimer(agent(n)) for n in range(claimers)]
    barrier = threading.Barrier(claimers + 1)
    done = itertools.count(1)
    progress = [0]

    def claim_all(me: Claimer) -> None:
        barrier.wait()
        try:
            while True:
                started = time.perf_counter()
                item = batcher.claim_next(
                    me.principal, ttl_s=None, default_ttl_s=300, default_stall_after_s=stall_after_s
                )
                elapsed = time.perf_counter() - started
                if item is None:
                    break
                me.claimed.append(item.id)
                me.latencies.append(elapsed)
                progress[0] = next(done)
        except BaseException as exc:  # reported below: a failed claimer fails the run
            me.error = exc
        me.finished = time.perf_counter()

    threads = [threading.Thread(target=claim_all, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    python_s, database_s = time.process_time(), backends_cpu_s(pids)
    for t in threads:
        while t.is_alive():
            t.join(timeout=1.0)
            if t.is_alive():
                log(f"  claimed {progress[0]:,} of {total:,} ({time.perf_counter() - start:.0f} s)")
    end = max(w.finished for w in workers)
    cpu = Cpu(python_s=time.process_time() - python_s)
    database_end = backends_cpu_s(pids)
    if database_s is not None and database_end is not None:
        cpu.database_s = database_end - database_s
    return workers, start, end, cpu


def verify(engine: Engine, ids: list[str], workers: list[Claimer]) -> list[str]:
    """What is wrong, if anything: every item claimed exactly once, by tally and by audit trail."""
    problems = [f"{w.principal.ref} failed: {w.error!r}" for w in workers if w.error is not None]
    tally = Counter(item_id for w in workers for item_id in w.claimed)
    missing = set(ids) - set(tally)
    twice = {i: n for i, n in tally.items() if n != 1}
    if missing:
        problems.append(f"{len(missing)} items never claimed (e.g. {sorted(missing)[:3]})")
    if twice:
        problems.append(f"{len(twice)} items claimed more than once (e.g. {sorted(twice.items())[:3]})")
    if set(tally) - set(ids):
        problems.append("claimed items that were not seeded")
    with engine.connect() as conn:
        audited = Counter(
            dict(
                conn.execute(
                    select(WorkItemEvent.item_id, func.count())
                    .where(WorkItemEvent.action == "claimed")
                    .group_by(WorkItemEvent.item_id)
                ).all()
            )
        )
        epochs = Counter(conn.scalars(select(WorkItem.lease_epoch)).all())
        unclaimed = conn.scalar(select(func.count()).where(WorkItem.claimed_by_id.is_(None)))
    if audited != tally:
        problems.append(f"audit trail disagrees: {sum(audited.values())} 'claimed' events for {len(audited)} items")
    if epochs != Counter({1: len(ids)}):
        problems.append(f"lease epochs are not all 1: {dict(epochs)}")
    if unclaimed:
        problems.append(f"{unclaimed} items left unclaimed in the table")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000, help="items in the pool (default 5000)")
    parser.add_argument("--claimers", type=int, default=50, help="concurrent claimer threads (default 50)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WORKYARD_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL; a scratch schema is made in it (default WORKYARD_DATABASE_URL or the local test DB)",
    )
    defaults = Settings.model_fields
    parser.add_argument(
        "--transactions",
        type=int,
        default=defaults["work_claim_transactions"].default,
        help="claim transactions at once (default: the server's, WORKYARD_WORK_CLAIM_TRANSACTIONS's default)",
    )
    parser.add_argument(
        "--batch-max",
        type=int,
        default=defaults["work_claim_batch_max"].default,
        help="claims one transaction serves at most (default: the server's)",
    )
    parser.add_argument(
        "--without-stall",
        action="store_true",
        help="claims arm no stall clock (as this bench's claims did before 2026-12-05, night); "
        "default: the server's WORKYARD_WORK_STALL_AFTER_S, as the API's claims",
    )
    parser.add_argument("--sqlite", action="store_true", help="run on a SQLite file instead of PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema / SQLite file")
    args = parser.parse_args()
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    stall_after_s: float | None = None if args.without_stall else defaults["work_stall_after_s"].default
    print(
        f"{args.claimers} claimers draining {args.items:,} agent-offered items on {backend}, "
        f"at most {args.transactions} claim transactions of up to {args.batch_max} claims, "
        f"stall clock {'off' if stall_after_s is None else f'{stall_after_s:g} s'}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with scratch_database(None if args.sqlite else args.database_url, prefix="bench_cl", keep=args.keep) as url:
        engine = claims_engine(url, args.claimers)
        try:
            upgrade(engine)
            started = time.perf_counter()
            ids = seed(engine, args.items, args.seed)
            log(f"  seeded {len(ids):,} items in {time.perf_counter() - started:.1f} s")
            floor = commit_floor(engine)
            workers, start, end, cpu = run_claimers(
                engine, args.claimers, len(ids), args.transactions, args.batch_max, stall_after_s
            )
            problems = verify(engine, ids, workers)
        finally:
            engine.dispose()
    latencies = [x for w in workers for x in w.latencies]
    claimed = len(latencies)
    per_claimer = sorted(len(w.claimed) for w in workers)
    rate = claimed / (end - start)
    print(
        f"{backend:<10} {claimed:,} claims in {end - start:.2f} s: {rate:.1f} claims/s   "
        f"p50 {pct(latencies, 0.5) * 1000:.1f} ms   p99 {pct(latencies, 0.99) * 1000:.1f} ms   "
        f"max {max(latencies) * 1000:.1f} ms   (per claimer {per_claimer[0]}-{per_claimer[-1]}; "
        f"load average {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    database = (
        f"; their PostgreSQL backends {cpu.database_s / claimed * 1000:.2f} ms "
        f"({cpu.database_s / (end - start) * 100:.0f}%)"
        if cpu.database_s is not None
        else ""
    )
    print(
        f"{'':<10} CPU a claim: the claimers' Python {cpu.python_s / claimed * 1000:.2f} ms "
        f"({cpu.python_s / (end - start) * 100:.0f}% of one core){database}",
        flush=True,
    )
    print(
        f"{'':<10} for scale: one INSERT + COMMIT alone, p50 {pct(floor, 0.5) * 1000:.1f} ms   "
        f"p99 {pct(floor, 0.99) * 1000:.1f} ms",
        flush=True,
    )
    if problems:
        for problem in problems:
            print(f"FAILED: {problem}", flush=True)
        sys.exit(1)
    print(f"verified: each of the {len(ids):,} items claimed exactly once (claimers' tally and audit trail agree)")
    p99_ms = pct(latencies, 0.99) * 1000
    print(f"claims: {rate:.1f} claims/s, p99 {p99_ms:.1f} ms ({args.claimers} claimers, {backend})")
    # The line the performance issue reads (its target: >= 1,000 a second, p99 <= 100 ms, 50 claimers, PostgreSQL).
    print(f"claims per second at {args.claimers} claimers: {rate:.0f}")


if __name__ == "__main__":
    main()
