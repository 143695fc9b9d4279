"""Latency of next-work on a large work-item table, on PostgreSQL (or SQLite with --sqlite).

    python bench/next_work.py [--sizes 100000,1000000] [--calls 2000] [--database-url URL] [--explain]
    python bench/next_work.py --sqlite [--sizes 100000]

For each size N: a fresh PostgreSQL schema ``bench_nw_<random>`` on the database named by
--database-url (or WORKYARD_DATABASE_URL), migrated to head, is seeded with N work items by COPY
(SQLite: Core executemany), then ANALYZEd; then ``next_work()`` is called for random assignees,
one session per call as the API does, and p50/p99 per call are printed. The schema (or SQLite
file) is dropped at the end unless --keep.

The seeded mix: 10,000 principals (70% users, 30% agents) per run, split over --tenants
tenants; assignees and reporters drawn from that population with a skew (a few principals
carry many items); ~2% epics, ~60% tasks (most under an epic), ~38% subtasks (each under a recent
task of its tenant); statuses of the ``work`` lifecycle, older items mostly done or cancelled
(is_open follows the status); ~20% of items with 1-3 dependencies on earlier items (so some are
resolved and some not); ~1% soft-deleted; some labels.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert, text  # noqa: E402

from bench.support import DEFAULT_DATABASE_URL, PRIORITIES, log, pct, scratch_database  # noqa: E402
from models.principal import Principal, PrincipalType  # noqa: E402
from models.work_tables import DEPENDENCIES, LABELS, WORK_ITEMS  # noqa: E402
from orchestrator.storage.db import make_engine, make_session_factory  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.work.next_work import next_work, pick_query  # noqa: E402

TENANT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")
LABEL_NAMES = tuple(f"label-{n:02d}" for n in range(20))
OPEN_STATUSES = (("todo", 0.45), ("in_progress", 0.20), ("blocked", 0.15), ("review", 0.20))
CLOSED_STATUSES = (("done", 0.88), ("cancelled", 0.12))
SPAN = timedelta(days=365)
PROGRESS_EVERY = 100_000
BATCH = 5_000

# Columns the seeder fills, in this order; the rest keep their defaults (NULL).
ITEM_COLUMNS = (
    "id",
    "code",
    "tenant",
    "type",
    "lifecycle",
    "title",
    "description",
    "priority",
    "status",
    "is_open",
    "created_by",
    "reporter_type",
    "reporter_id",
    "assignee_type",
    "assignee_id",
    "parent_id",
    "payload",
    "metadata",
    "offer_type",
    "offer_scope",
    "claimed_by_type",
    "claimed_by_id",
    "claimed_at",
    "lease_epoch",
    "lease_expires_at",
    "version",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "deleted_at",
)


# -- the seeded population and items -----------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A seeded principal (a user or an agent of one tenant) that work items are assigned to or reported by."""

    type: str
    id: str
    tenant: str

    @property
    def ref(self) -> str:
        return f"{self.type}:{self.id}"


def make_population(size: int, tenants: int) -> list[Party]:
    """``size`` principals, three in ten agents, spread round-robin over the tenants."""
    parties = []
    for n in range(size):
        kind = "agent" if n % 10 < 3 else "user"
        parties.append(Party(kind, f"{kind}-{n:05d}", TENANT_NAMES[n % tenants]))
    return parties


def pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    r = rng.random()
    for value, weight in weighted:
        r -= weight
        if r < 0:
            return value
    return weighted[-1][0]


@dataclass
class Seeded:
    """How many work items, dependencies and labels one seeding wrote."""

    items: int = 0
    dependencies: int = 0
    labels: int = 0


class ItemGenerator:
    """Work items oldest first, with parents, dependencies and labels that point backwards."""

    def __init__(self, n: int, population: list[Party], tenants: int, *, skew: float, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.skew = skew
        self.tenants = [TENANT_NAMES[t] for t in range(tenants)]
        self.parties = {t: [p for p in population if p.tenant == t] for t in self.tenants}
        self.start = datetime.now(UTC) - SPAN - timedelta(days=1)
        self.step = SPAN / n
        self.ids: list[str] = []
        self.assignees = array("i")  # index into the tenant's parties, -1 if unassigned
        self.reporters = array("i")
        self.tasks: dict[str, list[int]] = {t: [] for t in self.tenants}
        self.epics: dict[str, list[int]] = {t: [] for t in self.tenants}
        self.by_tenant: dict[str, list[int]] = {t: [] for t in self.tenants}
        self.dependencies: list[tuple[str, str]] = []
        self.labels: list[tuple[str, str]] = []

    def party(self, tenant: str) -> int:
        """A skewed pick: the first principals of a tenant carry the most items."""
        pool = self.parties[tenant]
        return int(len(pool) * self.rng.random() ** self.skew)

    def recent(self, indexes: list[int], window: int) -> int:
        return indexes[-1 - self.rng.randrange(min(len(indexes), window))]

    def rows(self, json_empty: Any) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        for i in range(self.n):
            tenant = self.tenants[rng.randrange(len(self.tenants))]
            pool = self.parties[tenant]
            created = self.start + self.step * i
            r = rng.random()
            kind = "epic" if r < 0.02 else "task" if r < 0.62 or not self.tasks[tenant] else "subtask"
            parent: int | None = None
            if kind == "subtask":
                parent = self.recent(self.tasks[tenant], 2_000)
            elif kind == "task" and self.epics[tenant] and rng.random() < 0.7:
                parent = self.recent(self.epics[tenant], 200)
            # Older work is mostly finished: 97% closed at the start of the span, 22% at its end.
            closed = rng.random() < 0.97 - 0.75 * i / self.n
            status = pick(rng, CLOSED_STATUSES if closed else OPEN_STATUSES)
            assignee = -1
            if kind == "subtask" and parent is not None and rng.random() < 0.5:
                assignee = self.assignees[parent]
            elif rng.random() < 0.92:
                assignee = self.party(tenant)
            reporter = self.party(tenant)
            if kind == "subtask" and parent is not None and rng.random() < 0.5:
                reporter = self.assignees[parent] if self.assignees[parent] >= 0 else self.reporters[parent]
            item_id = f"WI-{tenant.upper()}-{kind.upper()}-{created:%Y%m%d}-{rng.getrandbits(40):010X}"
            self.ids.append(item_id)
            self.assignees.append(assignee)
            self.reporters.append(reporter)
            if kind == "epic":
                self.epics[tenant].append(i)
            elif kind == "task":
                self.tasks[tenant].append(i)
            earlier = self.by_tenant[tenant]
            if earlier and kind != "epic" and rng.random() < 0.2:
                for dep in {self.recent(earlier, 5_000) for _ in range(rng.randint(1, 3))}:
                    self.dependencies.append((item_id, self.ids[dep]))
            earlier.append(i)
            if rng.random() < 0.3:
                for label in {rng.choice(LABEL_NAMES) for _ in range(rng.randint(1, 2))}:
                    self.labels.append((item_id, label))
            who = pool[assignee] if assignee >= 0 else None
            by = pool[reporter]
            started = created + timedelta(hours=2) if status not in ("todo",) else None
            finished = created + timedelta(days=3) if closed else None
            claimed = who is not None and status == "in_progress"
            yield (
                item_id,
                item_id,
                tenant,
                kind,
                "work",
                f"{kind} {i}",
                "seeded by bench/next_work.py" if kind == "task" else None,
                PRIORITIES[rng.randrange(len(PRIORITIES))],
                status,
                not closed,
                by.ref,
                by.type,
                by.id,
                who.type if who else None,
                who.id if who else None,
                self.ids[parent] if parent is not None else None,
                json_empty,
                json_empty,
                "human",
                "work:claim",
                who.type if claimed and who else None,
                who.id if claimed and who else None,
                started if claimed else None,
                1 if claimed else 0,
                started + timedelta(days=400) if claimed and who and who.type == "agent" and started else None,
                1,
                created,
                finished or started or created,
                started,
                finished,
                created + timedelta(days=1) if rng.random() < 0.01 else None,
            )


def secondary_indexes(engine: Engine) -> list[tuple[str, str]]:
    """The work tables' plain indexes (not those behind a primary key or unique constraint)."""
    with engine.connect() as conn:
        return [
            (row.indexname, row.indexdef)
            for row in conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                    " AND tablename IN ('work_items', 'work_item_dependencies', 'work_item_labels')"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint"
                    "  WHERE connamespace = current_schema()::regnamespace)"
                )
            )
        ]


def seed_postgres(engine: Engine, gen: ItemGenerator) -> Seeded:
    """COPY the items, then their dependencies and labels; indexes are built after the load."""
    indexes = secondary_indexes(engine)
    with engine.begin() as conn:
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
    seeded = Seeded()
    cols = ", ".join(f'"{c}"' for c in ITEM_COLUMNS)
    raw = engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection
        with dbapi.cursor() as cur:
            with cur.copy(f"COPY work_items ({cols}) FROM STDIN") as copy:
                for row in gen.rows("{}"):
                    copy.write_row(row)
                    seeded.items += 1
                    if seeded.items % PROGRESS_EVERY == 0:
                        log(f"  items: {seeded.items:,} of {gen.n:,}")
            with cur.copy("COPY work_item_dependencies (item_id, depends_on_id) FROM STDIN") as copy:
                for pair in gen.dependencies:
                    copy.write_row(pair)
            with cur.copy("COPY work_item_labels (item_id, label) FROM STDIN") as copy:
                for pair in gen.labels:
                    copy.write_row(pair)
        dbapi.commit()
    finally:
        raw.close()
    seeded.dependencies, seeded.labels = len(gen.dependencies), len(gen.labels)
    log(f"  copied {seeded.items:,} items, {seeded.dependencies:,} dependencies, {seeded.labels:,} labels")
    with engine.begin() as conn:
        for name, definition in indexes:
            started = time.perf_counter()
            conn.execute(text(definition))
            log(f"  index {name}: {time.perf_counter() - started:.1f} s")
    return seeded


def seed_sqlite(engine: Engine, gen: ItemGenerator) -> Seeded:
    """Core executemany, BATCH rows per statement."""
    seeded = Seeded()
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in gen.rows({}):
            batch.append(dict(zip(ITEM_COLUMNS, row, strict=True)))
            if len(batch) == BATCH:
                conn.execute(insert(WORK_ITEMS), batch)
                seeded.items += len(batch)
                batch.clear()
                if seeded.items % PROGRESS_EVERY == 0:
                    log(f"  items: {seeded.items:,} of {gen.n:,}")
        if batch:
            conn.execute(insert(WORK_ITEMS), batch)
            seeded.items += len(batch)
        for table, pairs, key in (
            (DEPENDENCIES, gen.dependencies, "depends_on_id"),
            (LABELS, gen.labels, "label"),
        ):
            for start in range(0, len(pairs), BATCH):
                conn.execute(insert(table), [{"item_id": a, key: b} for a, b in pairs[start : start + BATCH]])
    seeded.dependencies, seeded.labels = len(gen.dependencies), len(gen.labels)
    log(f"  inserted {seeded.items:,} items, {seeded.dependencies:,} dependencies, {seeded.labels:,} labels")
    return seeded


def analyze(engine: Engine, *, vacuum: bool) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)" if vacuum else "ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


# -- the measurement ---------------------------------------------------------------------------


def supervisor(tenant: str) -> Principal:
    return Principal(
        type=PrincipalType.user,
        id="bench-supervisor",
        tenant=tenant,
        scopes=frozenset({"work:read", "work:supervise"}),
    )


@dataclass
class Timing:
    """What the next-work calls measured: latencies, the pick SQL's alone, the rules that answered, who was slowest."""

    latencies: list[float]
    pick_latencies: list[float]
    levels: Counter[int]
    slowest: Party


def time_calls(engine: Engine, population: list[Party], calls: int, warmup: int, seed: int) -> Timing:
    """``next_work()`` end to end, a session per call; then its pick statement alone, for comparison."""
    sessions = make_session_factory(engine)
    rng = random.Random(seed)
    principals = {p.tenant: supervisor(p.tenant) for p in population}
    asked = [population[rng.randrange(len(population))] for _ in range(warmup + calls)]
    latencies: list[float] = []
    levels: Counter[int] = Counter()
    slowest, worst = population[0], -1.0
    for n, who in enumerate(asked):
        started = time.perf_counter()
        with sessions() as session:
            answer = next_work(session, principals[who.tenant], PrincipalType(who.type), who.id)
        elapsed = time.perf_counter() - started
        if n < warmup:
            continue
        latencies.append(elapsed)
        levels[answer.metadata.priorityLevel] += 1
        if elapsed > worst:
            slowest, worst = who, elapsed
        if (n - warmup + 1) % 500 == 0:
            log(f"  next-work calls: {n - warmup + 1} of {calls}")
    # The database's share: the same picks as ready SQL on one connection (built outside the clock).
    pick_latencies: list[float] = []
    with engine.connect() as conn:
        for n, who in enumerate(asked):
            compiled = pick_query(principals[who.tenant], who.type, who.id).compile(dialect=engine.dialect)
            expanded = compiled.construct_expanded_state()
            sql = expanded.statement
            params: Any = expanded.positional_parameters if compiled.positional else expanded.parameters
            started = time.perf_counter()
            conn.exec_driver_sql(sql, params).first()
            elapsed = time.perf_counter() - started
            if n >= warmup:
                pick_latencies.append(elapsed)
        conn.rollback()
    return Timing(latencies, pick_latencies, levels, slowest)


def explain(engine: Engine, who: Party) -> None:
    stmt = pick_query(supervisor(who.tenant), who.type, who.id)
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(prefix + sql).all()
    log(f"-- {prefix.strip()} of pick_query for {who.ref} (tenant {who.tenant}; the slowest next-work call):")
    for row in plan:
        log("  " + " | ".join(str(col) for col in row))


def seed(args: argparse.Namespace, engine: Engine, size: int, population: list[Party]) -> Seeded:
    gen = ItemGenerator(size, population, args.tenants, skew=args.skew, seed=args.seed)
    return (seed_sqlite if engine.dialect.name == "sqlite" else seed_postgres)(engine, gen)


def run_size(args: argparse.Namespace, base_url: str | None, size: int, explain_it: bool) -> float:
    backend = "PostgreSQL" if base_url else "SQLite"
    log(f"== {size:,} items on {backend}")
    with scratch_database(base_url, prefix="bench_nw", keep=args.keep) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            population = make_population(args.principals, args.tenants)
            started = time.perf_counter()
            seeded = seed(args, engine, size, population)
            seeding = time.perf_counter() - started
            started = time.perf_counter()
            analyze(engine, vacuum=not args.no_vacuum)
            analyzing = time.perf_counter() - started
            what = "VACUUM ANALYZE" if base_url and not args.no_vacuum else "ANALYZE"
            log(f"  seeded in {seeding:.1f} s, {what} {analyzing:.1f} s")
            gc.collect()  # the seeder's millions of objects are gone: do not bill their collection to next-work
            timing = time_calls(engine, population, args.calls, args.warmup, args.seed + size)
            if explain_it:
                explain(engine, timing.slowest)
        finally:
            engine.dispose()
    lat, pick_lat = timing.latencies, timing.pick_latencies
    levels = ", ".join(f"rule {k}: {v}" for k, v in sorted(timing.levels.items()))
    print(
        f"{backend:<10} {size:>9,} items  seeded in {seeding:6.1f} s ({seeded.dependencies:,} dependencies)  "
        f"next-work p50 {pct(lat, 0.5) * 1000:6.2f} ms  p99 {pct(lat, 0.99) * 1000:6.2f} ms  "
        f"max {max(lat) * 1000:6.2f} ms  ({len(lat)} calls; {levels}; load average {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    print(
        f"{'':<10} {'':>9}        pick SQL alone p50 {pct(pick_lat, 0.5) * 1000:6.2f} ms  "
        f"p99 {pct(pick_lat, 0.99) * 1000:6.2f} ms  max {max(pick_lat) * 1000:6.2f} ms",
        flush=True,
    )
    return pct(lat, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default=None, help="comma-separated item counts (default 100000,1000000; 100000 with --sqlite)"
    )
    parser.add_argument("--calls", type=int, default=2000, help="timed next-work calls per size (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first (default 200)")
    parser.add_argument("--principals", type=int, default=10_000, help="assignee/reporter population (default 10000)")
    parser.add_argument("--tenants", type=int, default=1, choices=range(1, len(TENANT_NAMES) + 1), metavar="1-8")
    parser.add_argument("--skew", type=float, default=1.5, help="assignee skew: 1 uniform, higher piles work on few")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WORKYARD_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL; a scratch schema is made in it (default WORKYARD_DATABASE_URL or the local test DB)",
    )
    parser.add_argument("--sqlite", action="store_true", help="run on a SQLite file instead of PostgreSQL")
    parser.add_argument("--explain", action="store_true", help="print the plan of the slowest call at the largest size")
    parser.add_argument("--no-vacuum", action="store_true", help="plain ANALYZE after seeding, not VACUUM ANALYZE")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema / SQLite file")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("100000" if args.sqlite else "100000,1000000")).split(",")]
    base_url = None if args.sqlite else args.database_url
    print(
        f"next-work over {args.principals:,} principals in {args.tenants} tenant(s), skew {args.skew}, "
        f"{args.calls} calls per size, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    p99 = {size: run_size(args, base_url, size, args.explain and size == max(sizes)) for size in sizes}
    largest = max(sizes)
    print(f"next-work p99 at {largest} items: {p99[largest] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
