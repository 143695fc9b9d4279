"""The traceability validation over a million work items, on PostgreSQL.

    python bench/traceability.py [--items 1000000] [--runs 3] [--database-url URL] [--keep] [--explain]

A fresh schema ``bench_trace_<random>`` on the database named by --database-url (or
WORKYARD_DATABASE_URL), migrated to head, is seeded in SQL (INSERT … SELECT generate_series: no
row crosses the wire) with --items work items of one tenant (``acme``) and a twentieth as many of
another (``globex``, which the validation must skip), then ANALYZEd. Then the tenant's full
validation (``orchestrator.traceability.validate``, what GET /api/v1/traceability/validate runs)
runs --runs times, each in its own transaction; the last line says the median. The small
tenant's validation is timed as often.

The seeded mix (per ``acme`` item; ``globex`` alike):
- 70% name one of 500 goals in ``relatedGoals``; 520 active goals (20 that no item names) and
  30 retired ones;
- 40% worked by one of 97 agents: claimed and started (actions 1 and 2); half of them completed
  (action 3, an output artifact), a tenth of those with evidence too (action 4, an artifact);
- the rest worked by people: claimed and completed, no actions;
- 5% passed a gate (``gate_passed``) under a policy version with approval steps, naming an approval;
- one in 500 had a compensation run, completed with its outcome in the history;
- every item's ``created`` row: about 3.4 audit rows an item in all.
A few broken chains of each kind, for the checks to find: 40 items whose ``started`` action is
missing, 40 completions without their artifact, 10 action ids not zero-padded, 5 ids held twice,
25 compensation runs not settled, 30 gate passages with a human in the loop and no approval.

Then the nightly run (``orchestrator.traceability.nightly.run``: the validation, and each broken
link it lists recorded, audited, remediated and notified), twice: the second finds the same breaks
and raises nothing new.

The real-time check (``orchestrator.traceability.realtime``) is then timed per transition on the
seeded tables: --transitions agent items each claimed, started and completed through
``orchestrator.work.claims`` as the API does, one transaction each; the check's own time within each
is measured, and its p99 printed with the transitions' own p50/p99 beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402

from bench.support import DEFAULT_DATABASE_URL, loadavg, log, pct, scratch_database  # noqa: E402
from models.principal import Principal, PrincipalType, Scope  # noqa: E402
from orchestrator.storage.db import make_engine, make_session_factory  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.traceability.validate import validate  # noqa: E402

TENANT = "acme"
OTHER = "globex"
AGENTS = 97
GOALS = 500

# One statement per table; :n the item count, :tenant its tenant, :t the tenant's upper-case code
# (written in by ``_spelled``).
# g: the item's number. Agent items: g % 5 in (0, 1); completed by an agent: g % 5 = 0; with
# evidence: g % 50 = 0; gate passages: g % 20 = 3; compensations: g % 500 = 7.
_ITEM = (
    "'WI-' || :t || '-TASK-' || to_char(timestamp '2025-12-01' + g * interval '30 second', 'YYYYMMDD') "
    "|| '-' || upper(lpad(to_hex(g), 10, '0'))"
)
_AGENT = "'agent-' || lpad((g % 97)::text, 3, '0')"
_AT = "(timestamptz '2025-12-01 00:00+00' + g * interval '30 second')"
_DIGEST = "(md5(:tenant || g::text) || md5(g::text || :tenant))"

SEED = [
    # Recording began before any seeded work: all of it is judged.
    "UPDATE trace_epoch SET started_at = timestamptz '2025-01-01 00:00+00'",
    "INSERT INTO goals (tenant, code, title, description, status, created_by, created_at) "
    "SELECT :tenant, 'GOAL-' || :t || '-' || lpad(c::text, 4, '0'), 'Goal ' || c, '', "
    "CASE WHEN c >= 520 THEN 'retired' ELSE 'active' END, 'user:bench', now() FROM generate_series(0, 549) c",
    "INSERT INTO policies (tenant, id, version, is_latest, body, body_hash, created_by, created_at) "
    "VALUES (:tenant, 'change-policy', 1, true, "
    "'{\"approvalSteps\": [{\"approvers\": [\"group:cab\"]}]}'::json, repeat('0', 64), 'user:bench', now())",
    # The items. Agent items completed by their agent are done, others still in progress.
    "INSERT INTO work_items (id, code, tenant, type, lifecycle, title, priority, status, is_open, created_by, "
    "reporter_type, reporter_id, payload, metadata, lease_epoch, version, sla_breach_count, related_goals, "
    "templates_applied, claimed_by_type, claimed_by_id, created_at, updated_at) "
    f"SELECT {_ITEM}, {_ITEM}, :tenant, 'task', 'work', 'Item ' || g, 50, "
    "CASE WHEN g % 5 = 1 THEN 'in_progress' ELSE 'done' END, g % 5 = 1, 'user:bench', 'user', 'bench', "
    "'{}'::json, '{}'::json, 1, 3, 0, "
    "CASE WHEN g % 10 < 7 THEN json_build_array('GOAL-' || :t || '-' || lpad(((g / 10) % 500)::text, 4, '0')) "
    "ELSE '[]'::json END, '[]'::json, "
    f"CASE WHEN g % 5 = 1 THEN 'agent' END, CASE WHEN g % 5 = 1 THEN {_AGENT} END, {_AT}, {_AT} "
    "FROM generate_series(1, :n) g",
    # Their history: created; claimed and started (agent items) or claimed (people's); completed
    # (by the agent, or by the person); evidence; gate passages; compensations' outcomes.
    "INSERT INTO work_item_events (item_id, tenant, action, actor, from_status, to_status, details, at) "
    f"SELECT {_ITEM}, :tenant, e.action, e.actor, NULL, e.to_status, e.details, {_AT} + e.offset_s * interval '1 s' "
    "FROM generate_series(1, :n) g CROSS JOIN LATERAL (VALUES "
    "('created', 'user:bench', 'todo', '{}'::json, 0, true), "
    f"('claimed', CASE WHEN g % 5 < 2 THEN 'agent:' || {_AGENT} ELSE 'user:u-' || (g % 300) END, NULL, "
    "'{\"lease_epoch\": 1}'::json, 10, true), "
    f"('started', 'agent:' || {_AGENT}, 'in_progress', '{{}}'::json, 20, g % 5 < 2), "
    f"('evidence', 'agent:' || {_AGENT}, NULL, json_build_object('sha256', {_DIGEST}, 'evidence', 'ev-' || g), "
    "30, g % 50 = 0), "
    f"('completed', CASE WHEN g % 5 = 0 THEN 'agent:' || {_AGENT} ELSE 'user:u-' || (g % 300) END, 'done', "
    f"json_build_object('lease_epoch', 1, 'result_sha256', {_DIGEST}), 40, g % 5 <> 1), "
    "('gate_passed', 'user:bench', NULL, json_build_object('transition', 'review->done', "
    "'policy', 'change-policy', 'policy_version', 1, 'policy_tenant', :tenant, 'hitl', false, "
    "'approvals', json_build_array('AP-' || g), 'evidence', '[]'::json), 35, g % 20 = 3)"
    ") AS e(action, actor, to_status, details, offset_s, present) WHERE e.present",
    # Agents' actions: claimed 1, started 2, completed 3, evidence 4.
    "INSERT INTO agent_actions (id, tenant, item_id, agent_id, sequence, kind, at) "
    f"SELECT 'ACT-' || {_ITEM} || '-' || {_AGENT} || '-' || lpad(a.seq::text, 3, '0'), :tenant, {_ITEM}, "
    f"{_AGENT}, a.seq, a.kind, {_AT} + a.seq * interval '10 s' "
    "FROM generate_series(1, :n) g CROSS JOIN LATERAL (VALUES (1, 'claimed', g % 5 < 2), "
    "(2, 'started', g % 5 < 2), (3, 'completed', g % 5 = 0), (4, 'evidence', g % 50 = 0)) "
    "AS a(seq, kind, present) WHERE a.present",
    "INSERT INTO artifacts (id, tenant, item_id, action_id, artifact_type, sha256, ref, created_at) "
    f"SELECT 'ART-' || x.act || '-' || x.kind || '-' || upper(substr({_DIGEST}, 1, 6)), :tenant, {_ITEM}, x.act, "
    f"x.kind, {_DIGEST}, x.ref, {_AT} "
    "FROM generate_series(1, :n) g CROSS JOIN LATERAL (VALUES "
    f"('ACT-' || {_ITEM} || '-' || {_AGENT} || '-003', 'output', NULL, g % 5 = 0), "
    f"('ACT-' || {_ITEM} || '-' || {_AGENT} || '-004', 'evidence', 'ev-' || g, g % 50 = 0)"
    ") AS x(act, kind, ref, present) WHERE x.present",
    # Compensation runs, settled: ended, their outcome in the history.
    "INSERT INTO work_item_compensations (id, item_id, tenant, saga_id, idempotence_key, request_hash, status, "
    "requested_by, from_status, created_at, ended_at) "
    f"SELECT 'c-' || :tenant || '-' || g, {_ITEM}, :tenant, 's-' || :tenant || '-' || g, 'k', repeat('0', 64), "
    f"'completed', 'user:bench', 'done', {_AT}, {_AT} + interval '1 minute' "
    "FROM generate_series(7, :n, 500) g",
    "INSERT INTO work_item_events (item_id, tenant, action, actor, details, at) "
    f"SELECT {_ITEM}, :tenant, 'compensated', 'system', "
    f"json_build_object('compensation', 'c-' || :tenant || '-' || g), {_AT} + interval '1 minute' "
    "FROM generate_series(7, :n, 500) g",
]

# A few broken chains of each kind (in ``acme`` only: ``globex`` stays whole).
BREAK = [
    # workItemToActionLinkage: 40 agent items lose their "started" action.
    "DELETE FROM agent_actions WHERE tenant = :tenant AND kind = 'started' AND item_id IN "
    f"(SELECT {_ITEM} FROM generate_series(10001, 10001 + 39 * 5, 5) g)",
    # actionToArtifactLinkage: 40 completions lose their output.
    "DELETE FROM artifacts WHERE tenant = :tenant AND artifact_type = 'output' AND item_id IN "
    f"(SELECT {_ITEM} FROM generate_series(20005, 20005 + 39 * 5, 5) g)",
    # deterministicIds: 10 action ids not zero-padded, 5 artifact ids that are also action ids.
    "UPDATE agent_actions SET id = replace(id, '-001', '-1') WHERE tenant = :tenant AND kind = 'claimed' "
    f"AND item_id IN (SELECT {_ITEM} FROM generate_series(30000, 30000 + 9 * 5, 5) g)",
    "INSERT INTO artifacts (id, tenant, item_id, action_id, artifact_type, sha256, ref, created_at) "
    f"SELECT 'ACT-' || {_ITEM} || '-' || {_AGENT} || '-002', :tenant, {_ITEM}, 'none', 'log', {_DIGEST}, NULL, now() "
    "FROM generate_series(40000, 40000 + 4 * 5, 5) g",
    # compensationTraceability: 10 ended without an end time, 10 failed without remediation,
    # 5 still running though their saga is gone.
    "UPDATE work_item_compensations SET ended_at = NULL WHERE id IN "
    "(SELECT 'c-' || :tenant || '-' || g FROM generate_series(7, 7 + 9 * 500, 500) g)",
    "UPDATE work_item_compensations SET status = 'failed' WHERE id IN "
    "(SELECT 'c-' || :tenant || '-' || g FROM generate_series(10007, 10007 + 9 * 500, 500) g)",
    "UPDATE work_item_compensations SET status = 'running', ended_at = NULL WHERE id IN "
    "(SELECT 'c-' || :tenant || '-' || g FROM generate_series(20007, 20007 + 4 * 500, 500) g)",
    # approvalTraceability: 30 gate passages with a human in the loop and no approval.
    "INSERT INTO work_item_events (item_id, tenant, action, actor, details, at) "
    f"SELECT {_ITEM}, :tenant, 'gate_passed', 'user:bench', "
    '\'{"transition": "review->done", "hitl": true, "approvals": [], "evidence": []}\'::json, now() '
    "FROM generate_series(50000, 50000 + 29 * 7, 7) g",
]

EXPECTED = {
    "orphaned_goals_count": 20,
    "orphaned_work_items_count": 40,
    "orphaned_actions_count": 40,
    "duplicate_ids_count": 5,
    "invalid_formats_count": 15,
    "incomplete_compensations_count": 25,
    "missing_approvals_count": 30,
}


def _spelled(statement: str, tenant: str, n: int) -> str:
    """The statement with its tenant and count written in (literals: PostgreSQL would type a
    parameter used as both text and varchar twice, and refuse)."""
    return statement.replace(":tenant", f"'{tenant}'").replace(":t ", f"'{tenant.upper()}' ").replace(":n", str(n))


def seed(engine: Engine, n: int) -> None:
    for tenant, count, broken in ((TENANT, n, True), (OTHER, max(1_000, n // 20), False)):
        for statement in SEED[1:] if tenant == OTHER else SEED:
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(text(_spelled(statement, tenant, count)))
            log(f"  {tenant}: {statement[:60]}… {time.perf_counter() - started:.1f} s")
        if broken:
            with engine.begin() as conn:
                for statement in BREAK:
                    conn.execute(text(_spelled(statement, tenant, count)))
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    log(f"  vacuum analyze {time.perf_counter() - started:.1f} s")


def counts(engine: Engine) -> str:
    with engine.connect() as conn:
        parts = [
            f"{table} {conn.scalar(text(f'SELECT count(*) FROM {table}')):,}"
            for table in ("work_items", "work_item_events", "agent_actions", "artifacts", "goals")
        ]
    return ", ".join(parts)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu_s(engine: Engine) -> float | None:
    """CPU of every PostgreSQL process on this machine so far (the checks run there), or None."""
    from bench.support import proc_cpu_s

    total = 0.0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            cpu = proc_cpu_s(int(entry.name))
            if cpu is not None:
                total += cpu
                found = True
    return total if found else None


def run_small_tenant(engine: Engine, runs: int) -> None:
    """The validation of the small tenant beside the large one (what its nightly run costs)."""
    factory = make_session_factory(engine)
    principal = Principal(PrincipalType.user, "bench", OTHER, frozenset({Scope.work_read.value}))
    walls = []
    for _ in range(runs):
        before_pg = backend_cpu_s(engine)
        started = time.perf_counter()
        with factory.begin() as session:
            report = validate(session, principal, None)
        walls.append(time.perf_counter() - started)
        after_pg = backend_cpu_s(engine)
        pg = f"{after_pg - before_pg:.1f}" if before_pg is not None and after_pg is not None else "n/a"
        print(
            f"validation of {OTHER} beside it: {walls[-1]:.2f} s wall, PostgreSQL CPU {pg} s, load {loadavg()}, "
            f"status {report.overall_status}",
            flush=True,
        )


def run_validation(engine: Engine, runs: int, n: int) -> float:
    factory = make_session_factory(engine)
    principal = Principal(PrincipalType.user, "bench", TENANT, frozenset({Scope.work_read.value}))
    walls = []
    for run in range(runs):
        before_cpu, before_pg = cpu_s(), backend_cpu_s(engine)
        started = time.perf_counter()
        with factory.begin() as session:
            report = validate(session, principal, None)
        wall = time.perf_counter() - started
        after_pg = backend_cpu_s(engine)
        pg = f"{after_pg - before_pg:.1f}" if before_pg is not None and after_pg is not None else "n/a"
        walls.append(wall)
        found = {
            "orphaned_goals_count": report.checks.goal_to_work_item_linkage.orphaned_goals_count,
            "orphaned_work_items_count": report.checks.work_item_to_action_linkage.orphaned_work_items_count,
            "orphaned_actions_count": report.checks.action_to_artifact_linkage.orphaned_actions_count,
            "duplicate_ids_count": report.checks.deterministic_ids.duplicate_ids_count,
            "invalid_formats_count": report.checks.deterministic_ids.invalid_formats_count,
            "incomplete_compensations_count": report.checks.compensation_traceability.incomplete_compensations_count,
            "missing_approvals_count": report.checks.approval_traceability.missing_approvals_count,
        }
        wrong = {k: (v, EXPECTED[k]) for k, v in found.items() if v != EXPECTED[k]}
        print(
            f"validation run {run + 1}: {wall:.1f} s wall, bench CPU {cpu_s() - before_cpu:.1f} s, "
            f"PostgreSQL CPU {pg} s, load {loadavg()}, status {report.overall_status}"
            + (f", UNEXPECTED (found, seeded): {wrong}" if wrong else ", found what was seeded"),
            flush=True,
        )
    median = statistics.median(walls)
    print(f"traceability validation at {n} items: {median:.1f} s", flush=True)
    return median


def run_nightly(engine: Engine) -> None:
    """The nightly run's own work on top of the validation: each broken link it lists recorded, its
    item's audit row, a remediation item and a webhook check; then the same run again (nothing new)."""
    try:
        from orchestrator.traceability import nightly
    except ImportError:
        print("no nightly run in this checkout", flush=True)
        return
    from models.base import utcnow

    factory = make_session_factory(engine)
    for attempt in ("first", "again"):
        before_cpu, before_pg = cpu_s(), backend_cpu_s(engine)
        started = time.perf_counter()
        with factory.begin() as session:
            _, new = nightly.run(session, TENANT, utcnow())
        wall = time.perf_counter() - started
        after_pg = backend_cpu_s(engine)
        pg = f"{after_pg - before_pg:.1f}" if before_pg is not None and after_pg is not None else "n/a"
        print(
            f"nightly run ({attempt}): {wall:.1f} s wall, {new} breaks raised, bench CPU {cpu_s() - before_cpu:.1f} s, "
            f"PostgreSQL CPU {pg} s, load {loadavg()}",
            flush=True,
        )


def run_realtime(engine: Engine, transitions: int) -> float:
    """``transitions`` agent items created, claimed, started and completed as the API does them,
    one transaction each; the real-time check's time in each (the sum of its calls there)."""
    from models.work_api import WorkItemCreate
    from orchestrator.work import claims, items

    try:
        from orchestrator.traceability import realtime
    except ImportError:  # a checkout from before the check: the calls' own times only, to compare
        realtime = None  # type: ignore[assignment]

    factory = make_session_factory(engine)
    user = Principal(PrincipalType.user, "bench", TENANT, frozenset({Scope.work_read.value, Scope.work_write.value}))
    agent = Principal(
        PrincipalType.agent,
        "agent-rt",
        TENANT,
        frozenset({Scope.work_read.value, Scope.work_write.value, Scope.work_claim.value}),
    )
    spent: list[float] = []
    original = realtime.check if realtime is not None else None

    def timed(*args: Any, **kwargs: Any) -> Any:
        assert original is not None
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    checks: dict[str, list[float]] = {"create": [], "claim": [], "start": [], "complete": []}
    calls: dict[str, list[float]] = {name: [] for name in checks}

    def measured(name: str, call: Any) -> Any:
        spent.clear()
        started = time.perf_counter()
        result = call()
        calls[name].append(time.perf_counter() - started)
        checks[name].append(sum(spent))
        return result

    if realtime is not None:
        realtime.check = timed  # audit.py calls it through the module
    before_cpu, before_pg = cpu_s(), backend_cpu_s(engine)
    started = time.perf_counter()
    try:
        for n in range(transitions):
            body = WorkItemCreate.model_validate(
                {
                    "type": "task",
                    "title": f"Real-time {n}",
                    "description": "bench",
                    "offer": {"type": "agent"},
                    "relatedGoals": [f"GOAL-{TENANT.upper()}-{n % GOALS:04d}"],
                }
            )
            made = measured("create", lambda b=body: items.create_item(factory, user, b, max_payload_bytes=1 << 20))
            item_id = made[0].id
            with factory.begin() as session:
                claimed = measured(
                    "claim", lambda s=session, i=item_id: claims.claim(s, agent, i, ttl_s=None, default_ttl_s=60.0)
                )
            epoch = claimed.lease_epoch
            with factory.begin() as session:
                measured(
                    "start", lambda s=session, i=item_id, e=epoch: claims.start(s, agent, i, e, default_ttl_s=60.0)
                )
            with factory.begin() as session:
                measured(
                    "complete",
                    lambda s=session, i=item_id, e=epoch, r={"n": n}: claims.complete(s, agent, i, e, r),
                )
    finally:
        if realtime is not None and original is not None:
            realtime.check = original
    wall = time.perf_counter() - started
    after_pg = backend_cpu_s(engine)
    pg = f"{after_pg - before_pg:.1f}" if before_pg is not None and after_pg is not None else "n/a"
    for name in checks:
        print(
            f"  {name:8s} check p50 {pct(checks[name], 0.5) * 1e3:.2f} ms, p99 {pct(checks[name], 0.99) * 1e3:.2f} ms; "
            f"the whole call p50 {pct(calls[name], 0.5) * 1e3:.2f} ms, p99 {pct(calls[name], 0.99) * 1e3:.2f} ms",
            flush=True,
        )
    print(
        f"{transitions} items x create/claim/start/complete in {wall:.1f} s wall, "
        f"bench CPU {cpu_s() - before_cpu:.1f} s, PostgreSQL CPU {pg} s, load {loadavg()} "
        "(a claim on PostgreSQL is one statement: no audit.record, no check)",
        flush=True,
    )
    if realtime is None:
        print("no real-time check in this checkout", flush=True)
        return 0.0
    p99 = pct([t for name in ("create", "start", "complete") for t in checks[name]], 0.99)
    print(f"traceability real-time check p99: {p99 * 1e3:.1f} ms", flush=True)
    return p99


def explain(engine: Engine) -> None:
    """EXPLAIN ANALYZE of each check's statement, as the validation runs it."""
    from sqlalchemy import event

    statements: list[tuple[str, dict[str, object]]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    factory = make_session_factory(engine)
    principal = Principal(PrincipalType.user, "bench", TENANT, frozenset({Scope.work_read.value}))
    with factory.begin() as session:
        validate(session, principal, None)
    event.remove(engine, "before_cursor_execute", capture)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            started = time.perf_counter()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            log(f"--- {time.perf_counter() - started:.2f} s\n{statement[:300]}\n{plan}\n")
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transitions", type=int, default=2_000)
    parser.add_argument("--database-url", default=os.environ.get("WORKYARD_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each check to stderr")
    args = parser.parse_args()
    with scratch_database(args.database_url, prefix="bench_trace", keep=args.keep) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            log(f"seeding {args.items:,} items …")
            started = time.perf_counter()
            seed(engine, args.items)
            log(f"seeded in {time.perf_counter() - started:.0f} s: {counts(engine)}")
            print(f"seeded: {counts(engine)}; 2 cores, load {loadavg()}", flush=True)
            if args.explain:
                explain(engine)
            run_validation(engine, args.runs, args.items)
            run_small_tenant(engine, args.runs)
            run_nightly(engine)
            if args.transitions:
                run_realtime(engine, args.transitions)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
