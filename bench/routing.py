"""Latency of one routing decision over a registered fleet, on PostgreSQL (or SQLite with --sqlite).

    python bench/routing.py [--agents 1000] [--rules 200] [--items 2000] [--database-url URL]
    python bench/routing.py --sqlite

A fresh PostgreSQL schema ``bench_rt_<random>`` on the database named by --database-url (or
WORKYARD_DATABASE_URL), migrated to head, gets a fleet of --agents agents registered through the
registry (``orchestrator.agents.registry.register``; 30 capabilities, each agent declaring 3 to 6
of them at some proficiency, capacities 1-8, costs, autonomy levels, regions and budgets drawn at
random), all live; about a fifth of their capacity already taken by claimed items; --rules
routing rules registered through ``orchestrator.routing.rules.register`` (match on one of 40
labels and sometimes a type, one capability or skill selector, a strategy each, some with a cost
budget or data residency, priorities spread, two catch-alls); and --items open items, each with
two labels. Then ANALYZE (a database in use has planner statistics).

Then each item is routed once, one transaction per decision as a trigger runs it: lock the item,
read the tenant's live rules, the item's facts, the candidates' state (every agent serves the
tenant; a rule's pool of more than 32 is read in its strategy's order, as far as the choice needs),
decide, hold the chosen agent, write the decision, the audit row and the item, commit. Each
decision's wall time is recorded; p50/p90/p99/max are printed, with the split of a sample of
decisions into the candidates' reads and the engine. Agents are beaten for between batches (untimed),
so that none goes stale during the run. The last line is ``routing p99 at N agents: X.X ms``.
The schema (or SQLite file) is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert, select, text, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.support import DEFAULT_DATABASE_URL, log, open_task_row, pct, scratch_database  # noqa: E402
from models.agent_api import AgentCreate  # noqa: E402
from models.agent_tables import Agent  # noqa: E402
from models.agents import Candidate  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.principal import ALL_TENANTS, Principal, PrincipalType, Scope  # noqa: E402
from models.routing import RoutingRuleCreate  # noqa: E402
from models.work_tables import LABELS, WORK_ITEMS, WorkItem  # noqa: E402
from orchestrator.agents.registry import register as register_agent  # noqa: E402
from orchestrator.routing import assign, rules, source, triggers  # noqa: E402
from orchestrator.routing import engine as routing_engine  # noqa: E402
from orchestrator.routing.checks import Needs  # noqa: E402
from orchestrator.routing.cursors import cursor_for  # noqa: E402
from orchestrator.routing.engine import Pool, Unread  # noqa: E402
from orchestrator.routing.facts import item_facts  # noqa: E402
from orchestrator.routing.inputs import LiveRule  # noqa: E402
from orchestrator.storage.db import SessionFactory, make_engine, make_session_factory  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.work.ids import work_item_id  # noqa: E402

TENANT = "bench"
TARGET_P99_MS = 5.0
CAPABILITIES = tuple(f"cap-{n:02d}" for n in range(30))
LABEL_NAMES = tuple(f"label-{n:02d}" for n in range(40))
TYPES = ("task", "remediation", "change", "investigation")
LEVELS = ("novice", "intermediate", "advanced", "expert")
STRATEGIES = ("priority", "capacity_aware", "round_robin", "cost_minimizing")
REGIONS = ("KE", "UG", "EU", "US")
BATCH = 100  # decisions between two (untimed) heartbeats of the whole fleet
SAMPLE = 200  # decisions split into candidates query and engine
ROOT_PRINCIPAL = Principal(PrincipalType.user, "bench", ALL_TENANTS, frozenset({Scope.admin.value}))


def seed_agents(sessions: SessionFactory, n: int, rng: random.Random) -> None:
    for i in range(n):
        spec: dict[str, Any] = {
            "id": f"agent-{i:04d}",
            "tenant": TENANT,
            "agent_type": rng.choice(("stateless_tool_caller", "data_access", "actuator", "long_running_service")),
            "capabilities": [
                {"name": name, "proficiency": rng.choice(LEVELS)}
                for name in rng.sample(CAPABILITIES, rng.randint(3, 6))
            ],
            "capacity": rng.randint(1, 8),
            "autonomy": rng.choice(("L1", "L2", "L3", "L4")),
            "cost_per_item": round(rng.uniform(0.1, 20), 2),
            "data_boundary": {"regions": rng.sample(REGIONS, rng.randint(1, 2))},
        }
        if rng.random() < 0.3:
            spec["budget"] = {"unit": "USD", "limit": rng.choice((50, 500, 5000)), "period": "day"}
        with sessions.begin() as session:
            register_agent(session, ROOT_PRINCIPAL, AgentCreate.model_validate(spec))


def beat(sessions: SessionFactory) -> None:
    """Every agent heard from now: live for the next minute and a half."""
    with sessions.begin() as session:
        session.execute(update(Agent).where(Agent.tenant == TENANT).values(last_heartbeat_at=utcnow()))


def seed_rules(sessions: SessionFactory, n: int, rng: random.Random) -> None:
    owner = Principal(PrincipalType.user, "bench", TENANT, frozenset({Scope.routing_write.value}))
    for i in range(n):
        body: dict[str, Any] = {
            "id": f"rule-{i:03d}",
            "priority": rng.randint(0, 100),
            "strategy": STRATEGIES[i % len(STRATEGIES)],
            "match": {"labels": [rng.choice(LABEL_NAMES)]},
            "selectors": [
                {"kind": "skill", "value": rng.choice(CAPABILITIES), "min_proficiency": rng.choice(LEVELS[:3])}
                if rng.random() < 0.5
                else {"kind": "capability", "value": rng.choice(CAPABILITIES)}
            ],
        }
        if rng.random() < 0.3:
            body["match"]["types"] = rng.sample(TYPES, 2)
        if rng.random() < 0.3:
            body["cost_budget"] = {"currency": "USD", "limit": rng.choice((5, 10, 15))}
        if rng.random() < 0.2:
            body["data_residency"] = {"allowed_regions": rng.sample(REGIONS, 2)}
        if i < 2:  # catch-alls, tried last
            body.update(priority=-1, match={}, selectors=[])
        with sessions.begin() as session:
            rules.register(session, owner, RoutingRuleCreate.model_validate(body))


def seed_items(engine: Engine, n: int, agents: int, rng: random.Random) -> list[str]:
    """``n`` open items to route, and claimed items making about a fifth of the fleet's capacity busy."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    ids: list[str] = []
    for i in range(n):
        item_id = work_item_id(TENANT, "task", now, f"bench-routing-{i}")
        ids.append(item_id)
        rows.append(open_task_row(item_id, tenant=TENANT, title=f"route me {i}", priority=50, created=now))
        labels += [{"item_id": item_id, "label": label} for label in rng.sample(LABEL_NAMES, 2)]
    held: list[dict[str, Any]] = []  # inserted apart: an executemany takes its columns from the first row
    for i in range(agents * 4 // 5):
        item_id = work_item_id(TENANT, "task", now, f"bench-held-{i}")
        holder = f"agent-{rng.randrange(agents):04d}"
        held.append(
            open_task_row(
                item_id,
                tenant=TENANT,
                title=f"held {i}",
                priority=50,
                created=now,
                claimed_by_type="agent",
                claimed_by_id=holder,
                claimed_at=now,
                lease_epoch=1,
            )
        )
    with engine.begin() as conn:
        conn.execute(insert(WORK_ITEMS), rows)
        conn.execute(insert(WORK_ITEMS), held)
        conn.execute(insert(LABELS), labels)
    return ids


def route_all(sessions: SessionFactory, ids: list[str]) -> tuple[list[float], list[float], list[float], dict[str, int]]:
    """Route each item once, one transaction each, as ``triggers.decide`` does: the wall time of
    each decision (reading the rules, the item's facts and the candidates, and choosing), the
    CPU this process spent on it (its thread's: what a loaded machine does not inflate), and the
    wall time of its whole transaction (locking the item, the decision, writing it and the audit,
    committing)."""
    decisions: list[float] = []
    cpu: list[float] = []
    latencies: list[float] = []
    outcomes = {"chosen": 0, "no candidate": 0, "no rule": 0}
    for start in range(0, len(ids), BATCH):
        beat(sessions)
        for item_id in ids[start : start + BATCH]:
            began = time.perf_counter()
            with sessions.begin() as session:
                item = session.scalar(select(WorkItem).where(WorkItem.id == item_id).with_for_update())
                assert item is not None
                now = utcnow()
                deciding, spending = time.perf_counter(), time.thread_time()
                decision = triggers.plan(session, item, "manual", exclude=frozenset(), now=now)
                decisions.append(time.perf_counter() - deciding)
                cpu.append(time.thread_time() - spending)
                if decision is not None:
                    assign.apply(session, item, decision, trigger="manual", actor="user:bench", now=now)
            latencies.append(time.perf_counter() - began)
            if decision is None:
                outcomes["no rule"] += 1
            elif decision.chosen is not None:
                outcomes["chosen"] += 1
            else:
                outcomes["no candidate"] += 1
    return decisions, cpu, latencies, outcomes


class TimedPool:
    """The pools a decision asks for (``engine.PoolOf``), adding up the time their queries take."""

    def __init__(self, session: Session):
        self.session = session
        self.now = utcnow()
        self.spent_s = 0.0

    def __call__(self, needs: Needs) -> Pool:
        began = time.perf_counter()
        found = source.pool(self.session, TENANT, now=self.now, needs=needs)
        self.spent_s += time.perf_counter() - began
        if found.read is None:
            return found
        read = found.read

        def timed(agents: Sequence[Unread]) -> Sequence[Candidate]:
            # A large pool's agents are read as the engine asks, in its strategy's order.
            began = time.perf_counter()
            try:
                return read(agents)
            finally:
                self.spent_s += time.perf_counter() - began

        return replace(found, read=timed)

    def cursor(self, rule: LiveRule) -> str | None:
        return cursor_for(self.session, rule, TENANT)


def split(sessions: SessionFactory, ids: list[str]) -> tuple[list[float], list[float], list[float]]:
    """For a sample of items, each alone: the candidates queries a decision makes (the pools of the
    rules it tries), the engine, and the registry's candidates() of the whole fleet, for comparison."""
    queries: list[float] = []
    decisions: list[float] = []
    whole: list[float] = []
    beat(sessions)
    for item_id in ids[:SAMPLE]:
        with sessions() as session:
            item = session.get(WorkItem, item_id)
            assert item is not None
            live = rules.live_rules(session, TENANT)
            facts = item_facts(session, item)
            pools = TimedPool(session)
            began = time.perf_counter()
            matched = routing_engine.matching(live, facts, "manual")
            routing_engine.route(matched, facts, pools, trigger="manual", cursor_of=pools.cursor)
            queries.append(pools.spent_s)
            decisions.append(time.perf_counter() - began - pools.spent_s)
            began = time.perf_counter()
            source.candidates(session, TENANT, now=pools.now)
            whole.append(time.perf_counter() - began)
    return queries, decisions, whole


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000, help="registered agents (default 1000)")
    parser.add_argument("--rules", type=int, default=200, help="routing rules (default 200)")
    parser.add_argument("--items", type=int, default=2000, help="items routed, one decision each (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WORKYARD_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL; a scratch schema is made in it (default WORKYARD_DATABASE_URL or the local test DB)",
    )
    parser.add_argument("--sqlite", action="store_true", help="run on a SQLite file instead of PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema / SQLite file")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    print(
        f"routing {args.items:,} items over {args.agents:,} registered agents and {args.rules} rules on {backend}, "
        f"one transaction per decision; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with scratch_database(None if args.sqlite else args.database_url, prefix="bench_rt", keep=args.keep) as url:
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        try:
            upgrade(engine)
            started = time.perf_counter()
            seed_agents(sessions, args.agents, rng)
            seed_rules(sessions, args.rules, rng)
            ids = seed_items(engine, args.items, args.agents, rng)
            if not args.sqlite:
                # Planner statistics, as a database in use has them (autovacuum would, a minute later).
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE"))
            log(f"  seeded in {time.perf_counter() - started:.1f} s")
            queries, decisions, whole = split(sessions, ids)  # also warms the caches and the connection pool
            decided, cpu, latencies, outcomes = route_all(sessions, ids)
        finally:
            engine.dispose()
    print(
        f"decisions: {len(latencies):,} ({outcomes['chosen']:,} chose an agent, {outcomes['no candidate']:,} "
        f"found none fit, {outcomes['no rule']:,} matched no rule)",
        flush=True,
    )
    print(
        f"each decision (read the rules, the item's facts and the candidates; choose): p50 {ms(decided, 0.5)} ms   "
        f"p90 {ms(decided, 0.9)} ms   p99 {ms(decided, 0.99)} ms   max {max(decided) * 1000:.2f} ms",
        flush=True,
    )
    print(
        f"this process's CPU per decision: p50 {ms(cpu, 0.5)} ms   p99 {ms(cpu, 0.99)} ms   "
        f"mean {sum(cpu) / len(cpu) * 1000:.2f} ms",
        flush=True,
    )
    print(
        f"each routing transaction (lock the item, decide, write the item, the decision and the audit, commit): "
        f"p50 {ms(latencies, 0.5)} ms   p90 {ms(latencies, 0.9)} ms   p99 {ms(latencies, 0.99)} ms   "
        f"max {max(latencies) * 1000:.2f} ms",
        flush=True,
    )
    print(
        f"of the decisions, on {len(queries)} of them: reading the candidates p50 {ms(queries, 0.5)} ms, "
        f"p99 {ms(queries, 0.99)} ms; the engine p50 {ms(decisions, 0.5)} ms, p99 {ms(decisions, 0.99)} ms "
        f"(the registry's candidates() of all {args.agents} agents alone: p50 {ms(whole, 0.5)} ms, "
        f"p99 {ms(whole, 0.99)} ms)",
        flush=True,
    )
    p99_ms = pct(decided, 0.99) * 1000
    verdict = "met" if p99_ms <= TARGET_P99_MS else "not met"
    print(f"target: a decision's p99 <= {TARGET_P99_MS:g} ms: {verdict}", flush=True)
    print(f"routing p99 at {args.agents} agents: {p99_ms:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
