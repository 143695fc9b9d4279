"""Fire lag of the durable timer loop under a steady stream of due SLA timers.

    python bench/timers.py [--timers 100000] [--rate 1000] [--loops 1] [--poll-s S] [--database-url URL]
    python bench/timers.py --sqlite [--timers 100000] [--rate 1000]

A fresh PostgreSQL schema ``bench_t_<random>`` on the database named by --database-url (or
WORKYARD_DATABASE_URL), migrated to head (with --sqlite: a SQLite file in a temporary
directory), is seeded with N open work items, each with an SLA ({"breach_action": "notify"}),
and N ``sla_breach`` timers on them, due RATE per second from --lead-s after the timers start
going in (N/RATE seconds of schedule; the run stops if seeding is not done by then). Then the
timer loop runs as the orchestrator runs it (``TimerService.run``: back to back while a tick fires
something, else asleep until the next timer comes due, at most the poll interval,
``Settings().timer_poll_s`` unless --poll-s), in
--loops threads each with its own Wiring (engine, pool, TimerService), as several orchestrator
processes would share the table (threads of one process, so they share one GIL).

A timer's fire lag is the ``at`` of its item's ``sla_breached`` audit row minus the timer's
due time (kept in memory: a fired timer is deleted); a timer still unfired --grace-s after the
last due time counts with the lag it had then (a lower bound, said so). Printed: p50/p99/max lag, timers fired, and
the CPU of this process (``time.process_time``) over the firing phase per fired timer; the
PostgreSQL server's CPU is not in that figure (the CPU of the loops' own backends is printed
beside it when the server runs on this machine). Progress goes to stderr every --progress-s.
The last line is ``timer fire lag p99: X.XX s``. The schema (or SQLite file) is dropped at the
end unless --keep.
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, event, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import loadavg, log, open_task_row, pct, proc_cpu_s, scratch_database  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.enums import TimerKind  # noqa: E402
from models.tables import TIMERS, Timer  # noqa: E402
from models.work_tables import EVENTS, WORK_ITEMS  # noqa: E402
from orchestrator.service.timers import TIMER_BATCH  # noqa: E402
from orchestrator.service.wiring import Wiring  # noqa: E402
from orchestrator.storage.db import make_engine  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.work.ids import work_item_id  # noqa: E402

TENANT = "bench"
BATCH = 5_000
TARGET_P99_S = 1.0


# --- seeding ----------------------------------------------------------------------------------


def seed_items(engine: Engine, n: int) -> list[str]:
    """N open ``task`` items of the ``work`` lifecycle, each with a notify-on-breach SLA."""
    now = utcnow()
    # The SLA target is for show (the audit row copies it); the timers below carry the due times.
    sla: dict[str, Any] = {
        "target_ms": 600_000,
        "warn_at_pct": None,
        "breach_action": "notify",
        "breach_to": None,
        "escalation": [],
    }
    ids: list[str] = []
    started = time.perf_counter()
    for lo in range(0, n, BATCH):
        rows = []
        for i in range(lo, min(n, lo + BATCH)):
            item_id = work_item_id(TENANT, "task", now, f"bench-timers-{i}")
            ids.append(item_id)
            rows.append(
                open_task_row(
                    item_id,
                    tenant=TENANT,
                    title=f"bench item {i}",
                    priority=50,
                    created=now,
                    offer_type="human",
                    offer_scope="work:claim",
                    offer_group="nurses",
                    sla=sla,
                    sla_breach_count=0,
                )
            )
        with engine.begin() as conn:
            conn.execute(insert(WORK_ITEMS), rows)
        done = len(ids)
        if done % 50_000 < BATCH or done == n:
            log(f"  items: {done}/{n} ({time.perf_counter() - started:.1f} s)")
    return ids


def seed_timers(engine: Engine, item_ids: list[str], rate: float, first_due: datetime) -> list[float]:
    """One breach timer per item, the i-th due at first_due + i/rate; returns the due times (epoch s)."""
    now = utcnow()
    dues: list[float] = []
    for lo in range(0, len(item_ids), BATCH):
        rows = []
        for i in range(lo, min(len(item_ids), lo + BATCH)):
            due_at = first_due + timedelta(seconds=i / rate)
            dues.append(due_at.timestamp())
            rows.append(
                {
                    "key": f"{TimerKind.sla_breach.value}:{item_ids[i]}:breach",
                    "kind": TimerKind.sla_breach,
                    "item_id": item_ids[i],
                    "payload": {},
                    "due_at": due_at,
                    "created_at": now,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(TIMERS), rows)
    return dues


# --- the loops --------------------------------------------------------------------------------


class Loop:
    """One timer loop: its own Wiring (engine, pool, TimerService), counting what it fires."""

    def __init__(self, name: str, settings: Settings, counter: Counter):
        self.name = name
        self.wiring = Wiring(settings)
        self.counter = counter
        self.backend_pids: set[int] = set()
        if self.wiring.engine.dialect.name == "postgresql":
            event.listen(self.wiring.engine, "connect", self._on_connect)
        self.timers = self.wiring.timers

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend_pids.add(int(cursor.fetchone()[0]))

    def tick(self) -> int:
        started = time.perf_counter()
        fired = self.timers.tick()
        self.counter.add(fired, time.perf_counter() - started)
        return fired

    def backend_cpu_s(self) -> float | None:
        values = [proc_cpu_s(pid) for pid in self.backend_pids]
        return sum(v for v in values if v is not None) if values and None not in values else None


class Counter:
    """Timers fired by every loop and how long their busy ticks took, shared by the loop threads under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fired = 0
        self.busy_ticks = 0
        self.busy_s = 0.0
        self.max_tick_s = 0.0

    def add(self, fired: int, seconds: float) -> None:
        with self.lock:
            self.fired += fired
            if fired:
                self.busy_ticks += 1
                self.busy_s += seconds
                self.max_tick_s = max(self.max_tick_s, seconds)


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, url: str) -> None:
    base = Settings()
    poll_s = args.poll_s if args.poll_s is not None else base.timer_poll_s
    settings = Settings(
        database_url=url, data_dir=Path(tempfile.gettempdir()) / "workyard-bench-timers", timer_poll_s=poll_s
    )
    schedule_s = args.timers / args.rate
    print(
        f"{args.timers} SLA breach timers (notify) on {args.timers} open work items, {args.rate:g} due per second "
        f"over {schedule_s:.1f} s; {args.loops} timer loop(s), poll {poll_s:g} s, batch {TIMER_BATCH}; "
        f"{make_url(url).get_backend_name()}; {os.cpu_count()} cores",
        flush=True,
    )
    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        item_ids = seed_items(engine, args.timers)
        items_s = time.perf_counter() - started
        # The schedule starts --lead-s after the timers start going in; they must all be in by then.
        timers_started = time.perf_counter()
        first_due = utcnow() + timedelta(seconds=args.lead_s)
        dues = seed_timers(engine, item_ids, args.rate, first_due)
        timers_s = time.perf_counter() - timers_started
        analyze_started = time.perf_counter()
        with engine.begin() as conn:
            for table in (WORK_ITEMS, TIMERS):
                conn.execute(text(f"ANALYZE {table.name}"))
        analyze_s = time.perf_counter() - analyze_started
        with engine.connect() as conn:
            pending = conn.scalar(select(func.count()).select_from(TIMERS))
        print(
            f"seeding: {args.timers} items {items_s:.1f} s, {pending} timers {timers_s:.1f} s, "
            f"ANALYZE {analyze_s:.1f} s (total {items_s + timers_s + analyze_s:.1f} s)",
            flush=True,
        )
        due_by_item = dict(zip(item_ids, dues, strict=True))
        del item_ids
    finally:
        engine.dispose()
    if time.time() >= dues[0]:
        raise SystemExit(
            f"seeding ran past the first due time ({time.time() - dues[0]:.1f} s late): raise --lead-s "
            f"(now {args.lead_s:g})"
        )

    counter = Counter()
    loops = [Loop(f"timers-{n}", settings, counter) for n in range(args.loops)]
    for loop in loops:
        assert loop.tick() == 0  # warm up: a connection, compiled statements; nothing is due yet
    stop = threading.Event()
    threads = [
        threading.Thread(target=loop.timers.run, args=(stop, loop.tick), name=loop.name, daemon=True) for loop in loops
    ]
    deadline = dues[-1] + args.grace_s
    time.sleep(max(0.0, dues[0] - time.time()))
    load_before = loadavg()
    cpu_before = time.process_time()
    backend_before = [loop.backend_cpu_s() for loop in loops]
    wall_before = time.time()
    for thread in threads:
        thread.start()
    next_report = wall_before + args.progress_s
    try:
        while counter.fired < args.timers and time.time() < deadline:
            time.sleep(0.05)
            now = time.time()
            if now >= next_report:
                next_report += args.progress_s
                due = bisect.bisect_right(dues, now)
                fired = counter.fired
                log(
                    f"  t+{now - wall_before:5.1f} s: due {due:>7}, fired {fired:>7}, backlog {due - fired:>6}, "
                    f"load {loadavg()}"
                )
    finally:
        cpu_after = time.process_time()
        wall_after = time.time()
        backend_after = [loop.backend_cpu_s() for loop in loops]
        stop.set()
        for loop in loops:
            loop.timers.wake.set()
        for thread in threads:
            thread.join(timeout=60)
    load_after = loadavg()

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(EVENTS.c.item_id, EVENTS.c.at).where(
                    EVENTS.c.tenant == TENANT, EVENTS.c.action == "sla_breached"
                )
            ).all()
            left = conn.scalar(select(func.count()).select_from(Timer))
    finally:
        engine.dispose()
        for loop in loops:
            loop.wiring.close()

    lags = [at.timestamp() - due_by_item[item_id] for item_id, at in rows]
    fired_items = len({item_id for item_id, _ in rows})
    # A timer still unfired at the end counts with the lag it had by then: a lower bound.
    breached = {item_id for item_id, _ in rows}
    unfired = [
        wall_after - due for item_id, due in due_by_item.items() if item_id not in breached and due <= wall_after
    ]
    fired = counter.fired
    phase_s = wall_after - wall_before
    print(
        f"firing phase: {phase_s:.1f} s (schedule {schedule_s:.1f} s); fired {fired} of {args.timers} "
        f"({fired_items} items breached, {len(rows) - fired_items} twice); {left} timers left; "
        f"load average {load_before} -> {load_after}",
        flush=True,
    )
    if counter.busy_ticks:
        print(
            f"busy ticks: {counter.busy_ticks}, {fired / counter.busy_ticks:.1f} timers per tick, "
            f"{counter.busy_s / fired * 1000:.2f} ms wall per timer while busy, "
            f"longest tick {counter.max_tick_s:.2f} s",
            flush=True,
        )
    if fired:
        cpu_ms = (cpu_after - cpu_before) / fired * 1000
        print(
            f"scheduler CPU per fired timer: {cpu_ms:.2f} ms (this process, time.process_time; "
            "the database server's CPU is not included)",
            flush=True,
        )
        spent = [a - b for a, b in zip(backend_after, backend_before, strict=True) if a is not None and b is not None]
        if len(spent) == len(loops):
            backend_ms = sum(spent) / fired * 1000
            print(
                f"PostgreSQL backend CPU per fired timer: {backend_ms:.2f} ms (the loops' own backends, /proc; "
                "WAL writer, checkpointer and autovacuum not included)",
                flush=True,
            )
    if not lags:
        raise SystemExit("no timer fired")
    if unfired:
        print(
            f"{len(unfired)} due timers never fired within --grace-s: they count below with the lag they had at "
            "the end, so the figures are lower bounds",
            flush=True,
        )
        lags += unfired
    p99 = pct(lags, 0.99)
    print(
        f"fire lag: p50 {pct(lags, 0.5):.3f} s, p99 {p99:.3f} s, max {max(lags):.3f} s, min {min(lags):.3f} s "
        f"({len(lags)} timers)",
        flush=True,
    )
    print(f"target p99 <= {TARGET_P99_S:g} s: {'met' if p99 <= TARGET_P99_S else 'MISSED'}", flush=True)
    print(f"timer fire lag p99: {p99:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=100_000, help="pending timers (and items) (default 100000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="timers coming due per second (default 1000)")
    parser.add_argument("--loops", type=int, default=1, help="timer loops, each its own Wiring (default 1)")
    parser.add_argument(
        "--poll-s", type=float, default=None, help="idle poll interval (default Settings().timer_poll_s)"
    )
    parser.add_argument("--lead-s", type=float, default=15.0, help="first due time after timer seeding starts")
    parser.add_argument("--grace-s", type=float, default=600.0, help="how long to wait past the last due time")
    parser.add_argument("--progress-s", type=float, default=5.0, help="progress to stderr this often")
    parser.add_argument("--database-url", default=os.environ.get("WORKYARD_DATABASE_URL"), help="PostgreSQL URL")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the schema (or SQLite file) afterwards")
    args = parser.parse_args()
    if args.timers < 1 or args.rate <= 0 or args.loops < 1:
        parser.error("--timers, --rate and --loops must be positive")
    if not args.sqlite and not (args.database_url or "").startswith("postgresql"):
        parser.error("name a PostgreSQL database (WORKYARD_DATABASE_URL or --database-url), or pass --sqlite")
    with scratch_database(None if args.sqlite else args.database_url, prefix="bench_t", keep=args.keep) as url:
        run(args, url)


if __name__ == "__main__":
    main()
