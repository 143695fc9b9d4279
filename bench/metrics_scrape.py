"""How long a Prometheus scrape of the API's ``/metrics`` takes with many sagas and items stored.

    python bench/metrics_scrape.py [--sagas 100000] [--items 100000] [--scrapes 500] [--database-url URL]
    python bench/metrics_scrape.py --sqlite

A fresh PostgreSQL schema ``bench_m_<random>`` on the database named by --database-url (or
WORKYARD_DATABASE_URL), migrated to head (with --sqlite: a SQLite file in a temporary directory),
is seeded with bulk INSERTs: one template on two capabilities, N saga runs in a mix of states
(some past their SLA), M work items of four types in a mix of statuses (some started and completed
within the last hour, some with a breached SLA), plus a thousand each of dead letters, webhook
deliveries, outbox rows and timers; then ANALYZE. Each capability queue (named for this run on
the Redis of --redis-url, removed at the end) holds 100 dispatches.

The API runs in this process (FastAPI's TestClient: no socket, the app's own work plus the
in-process client's), with an admin token; ``GET /metrics`` is called --scrapes times, one after
another, as a scraper would (default settings: the counts are read at the first scrape, then
again every ``WORKYARD_METRICS_MAX_AGE_S`` (15 s) by a thread, while every scrape reads the lags
and the queues). Printed: the first scrape (which reads the counts itself), p50/p99/max of the
others, how long reading the counts takes (--reads times, what the thread does every 15 s), and
the load average before and after (the machine is shared). Between scrapes, ``/healthz`` is
timed the same way: what any request costs in this client on this machine at that moment, for
comparison. The last line is ``metrics scrape p99 at N sagas: X ms``. The schema (or SQLite
file) is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import loadavg, open_task_row, pct, scratch_database  # noqa: E402
from config import keys  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.tables import OUTBOX, SAGAS, TIMERS, DeadLetter, TemplateRow  # noqa: E402
from models.work_tables import DELIVERIES, WORK_ITEMS, Webhook  # noqa: E402
from orchestrator.api.app import create_app  # noqa: E402
from orchestrator.metrics.figures import read_counts  # noqa: E402
from orchestrator.storage.db import make_engine, make_session_factory, reading  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402

BATCH = 5_000
TARGET_P99_MS = 50.0
ADMIN = "bench-admin-token"
SAGA_STATES = [("completed", 70), ("running", 15), ("compensated", 10), ("compensating", 3), ("compensation_failed", 2)]
ITEM_TYPES = ("task", "job", "investigation", "remediation")
ITEM_STATUSES = [("todo", 40), ("in_progress", 20), ("review", 10), ("done", 25), ("cancelled", 5)]


def weighted(choices: list[tuple[str, int]], rng: random.Random) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def seed(engine: Engine, sagas: int, items: int, capabilities: list[str]) -> None:
    rng = random.Random(7)
    now = utcnow()
    steps = [{"name": f"s{n}", "capability": cap, "handler": f"s{n}"} for n, cap in enumerate(capabilities)]
    with engine.begin() as conn:
        conn.execute(
            insert(TemplateRow),
            [
                {
                    "tenant": "*",
                    "name": "bench",
                    "version": "1.0.0",
                    "spec": {"name": "bench", "version": "1.0.0", "steps": steps},
                    "spec_hash": "-",
                    "created_at": now,
                }
            ],
        )
    for start in range(0, sagas, BATCH):
        rows = []
        for n in range(start, min(sagas, start + BATCH)):
            created = now - timedelta(seconds=rng.uniform(0, 30 * 86_400))
            state = weighted(SAGA_STATES, rng)
            breached = rng.random() < 0.05
            rows.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "tenant": f"t{n % 20}",
                    "template_name": "bench",
                    "template_version": "1.0.0",
                    "state": state,
                    "input": {"n": n},
                    "input_hash": "-",
                    "results": {},
                    "created_at": created,
                    "updated_at": created,
                    "finished_at": None if state in ("running", "compensating") else created,
                    "sla_breached_at": created if breached else None,
                    "sla_breach_count": 1 if breached else 0,
                    "sla_events": [],
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(SAGAS), rows)
    for start in range(0, items, BATCH):
        rows = []
        for n in range(start, min(items, start + BATCH)):
            created = now - timedelta(seconds=rng.uniform(0, 3 * 86_400))
            status = weighted(ITEM_STATUSES, rng)
            begun = created + timedelta(seconds=rng.uniform(1, 3600))
            started = begun if status != "todo" else None
            completed = begun + timedelta(seconds=rng.uniform(1, 3600)) if status in ("done", "cancelled") else None
            has_sla = rng.random() < 0.3
            breached = has_sla and rng.random() < 0.2
            rows.append(
                open_task_row(
                    f"WI-BENCH-{n:08d}",
                    tenant=f"t{n % 20}",
                    title=f"item {n}",
                    priority=50,
                    created=created,
                    type=ITEM_TYPES[n % len(ITEM_TYPES)],
                    status=status,
                    is_open=completed is None,
                    started_at=started,
                    completed_at=completed,
                    sla={"target_ms": 3_600_000, "breach_action": "notify"} if has_sla else None,
                    sla_breached_at=created if breached else None,
                    sla_breach_count=1 if breached else 0,
                )
            )
        with engine.begin() as conn:
            conn.execute(insert(WORK_ITEMS), rows)
    with engine.begin() as conn:
        conn.execute(
            insert(DeadLetter),
            [{"source": "bench", "reason": "bench", "body": "?", "received_at": now} for _ in range(1000)],
        )
        conn.execute(
            insert(Webhook),
            [
                {
                    "id": "wh",
                    "tenant": "t0",
                    "url": "https://example.com/",
                    "secret_encrypted": "-",
                    "events": [],
                    "created_by": "bench",
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            insert(DELIVERIES),
            [
                {
                    "webhook_id": "wh",
                    "event": "saga.completed",
                    "payload": {},
                    "state": ("delivered", "failed", "pending")[n % 3],
                    "attempts": 1,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for n in range(1000)
            ],
        )
        conn.execute(
            insert(OUTBOX),
            [{"queue": "cap.x", "payload": {}, "created_at": now, "publish_count": 0} for _ in range(1000)],
        )
        conn.execute(
            insert(TIMERS),
            [
                {"key": f"bench:{n}", "kind": "dispatch", "payload": {}, "due_at": now + timedelta(seconds=n)}
                for n in range(1000)
            ],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("VACUUM ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))


def fill_queues(client: redis.Redis, capabilities: list[str]) -> None:
    """100 dispatches on each capability queue, as kombu would store them (the body base64 JSON)."""
    dispatched = utcnow().isoformat()
    body = base64.b64encode(json.dumps([[{"dispatched_at": dispatched}], {}, {}]).encode()).decode()
    message = json.dumps({"body": body, "properties": {"body_encoding": "base64", "delivery_tag": "x"}})
    for capability in capabilities:
        client.lpush(keys.capability_queue(capability), *([message] * 100))


def run(args: argparse.Namespace, url: str) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per scrape
    run_id = uuid.uuid4().hex[:8]
    capabilities = [f"bench_{run_id}_alpha", f"bench_{run_id}_beta"]
    print(
        f"/metrics with {args.sagas} sagas and {args.items} work items stored; {args.scrapes} scrapes; "
        f"{make_url(url).get_backend_name()}; {os.cpu_count()} cores; load average {loadavg()}",
        flush=True,
    )
    engine = make_engine(url)
    broker = redis.Redis.from_url(args.redis_url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        seed(engine, args.sagas, args.items, capabilities)
        fill_queues(broker, capabilities)
        print(f"seeding (bulk INSERTs, then VACUUM ANALYZE): {time.perf_counter() - started:.1f} s", flush=True)

        sessions = make_session_factory(engine)
        reads = []
        for _ in range(args.reads):
            started = time.perf_counter()
            with reading(sessions) as session:
                read_counts(session, utcnow())
            reads.append((time.perf_counter() - started) * 1000)

        settings = Settings(
            database_url=url,
            data_dir=Path(tempfile.gettempdir()) / "workyard-bench-metrics",
            broker_url=args.redis_url,
            redis_url=args.redis_url,
            admin_token=ADMIN,
        )
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
            started = time.perf_counter()
            first = client.get("/metrics")
            first_ms = (time.perf_counter() - started) * 1000
            assert first.status_code == 200, first.text
            assert f'workyard_queue_messages{{capability="{capabilities[0]}"}} 100.0' in first.text, first.text
            times, floor = [], []
            for _ in range(args.scrapes):
                started = time.perf_counter()
                response = client.get("/metrics")
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
                # The same client and app asked for nothing (/healthz): what any request costs here.
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                floor.append((time.perf_counter() - started) * 1000)
            size = len(response.content)
    finally:
        for capability in capabilities:
            broker.delete(keys.capability_queue(capability))
        broker.close()
        engine.dispose()

    print(
        f"reading the counts (every 15 s, in a thread): p50 {pct(reads, 0.5):.1f} ms, "
        f"p99 {pct(reads, 0.99):.1f} ms, max {max(reads):.1f} ms over {len(reads)} reads",
        flush=True,
    )
    print(f"first scrape (reads the counts itself): {first_ms:.1f} ms", flush=True)
    p99 = pct(times, 0.99)
    print(
        f"scrapes: p50 {pct(times, 0.5):.1f} ms, p99 {p99:.1f} ms, max {max(times):.1f} ms over {len(times)} "
        f"({size} bytes each); load average after {loadavg()}",
        flush=True,
    )
    print(
        f"/healthz between them (any request's cost in this client and app, on this machine now): "
        f"p50 {pct(floor, 0.5):.1f} ms, p99 {pct(floor, 0.99):.1f} ms",
        flush=True,
    )
    print(f"target p99 <= {TARGET_P99_MS:g} ms: {'met' if p99 <= TARGET_P99_MS else 'MISSED'}", flush=True)
    print(f"metrics scrape p99 at {args.sagas} sagas: {p99:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sagas", type=int, default=100_000, help="saga runs stored (default 100000)")
    parser.add_argument("--items", type=int, default=100_000, help="work items stored (default 100000)")
    parser.add_argument("--scrapes", type=int, default=500, help="scrapes timed (default 500)")
    parser.add_argument("--reads", type=int, default=20, help="readings of the counts timed (default 20)")
    parser.add_argument("--database-url", default=os.environ.get("WORKYARD_DATABASE_URL"), help="PostgreSQL URL")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/15", help="the broker's Redis (its queues are read)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema (or SQLite file) afterwards")
    args = parser.parse_args()
    if args.sagas < 0 or args.items < 0 or args.scrapes < 1 or args.reads < 1:
        parser.error("--sagas and --items must be >= 0, --scrapes and --reads positive")
    if not args.sqlite and not (args.database_url or "").startswith("postgresql"):
        parser.error("name a PostgreSQL database (WORKYARD_DATABASE_URL or --database-url), or pass --sqlite")
    with scratch_database(None if args.sqlite else args.database_url, prefix="bench_m", keep=args.keep) as url:
        run(args, url)


if __name__ == "__main__":
    main()
