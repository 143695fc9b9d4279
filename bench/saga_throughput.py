"""Workyard sagas against raw Celery chains, on the same Redis and worker concurrency: a burst and a steady pace.

    python bench/saga_throughput.py [--mode burst|paced|both] [--sagas 1000] [--paced-sagas 1000]
        [--rate 50] [--rounds 3] [--idle-s 10] [--postgres URL] [--no-trace] [--wait-quiet S] [--raw-events]

Three sides: raw Celery chains ``a | b | c`` (no result backend, nothing persisted), workyard on
SQLite and, with --postgres (or WORKYARD_BENCH_DATABASE_URL), workyard on PostgreSQL (a scratch
schema per run, dropped afterwards). Each side runs --rounds times, the order rotated each round
(raw, sqlite, postgres / sqlite, postgres, raw / ...) so that drift on a shared machine hits every
side; every figure is the median of the rounds. Per side and round, on one fresh stack (or worker):

- idle: --idle-s seconds with nothing submitted, CPU as % of one core (every process of the side:
  workers with their pools, orchestrator, Redis, the run's PostgreSQL backends);
- paced: --paced-sagas three-step no-op sagas, open loop at --rate per second: each submitted at
  its due time whether or not earlier ones finished, late if the submitter fell behind; latency
  runs from the due time to when a client saw the saga finish (see bench/pacing.py), so a backlog
  shows instead of hiding in a slower submitter;
- burst: --sagas sagas submitted at once; sagas/s from the first submit to the last finish, latency
  from each submit to its finish as stored (the raw chain: as its last task recorded it).

Each run prints the CPU each process spent per saga; "CPU ms per saga" in the summary is their sum
(the submitter's own CPU without the benchmark's finish watcher). Then, for workyard, where a paced
saga's time goes, segment by segment and step by step, from what workyard stores
(bench/saga_segments.py), pooled over the rounds; and, unless --no-trace, one more paced run per
backend with Celery's task events captured, which splits each "applied → next start" into the
coordinator's transaction up to the publish, the broker and the worker, and each "report →
applied" where the worker is done. The output ends with two lines: ``throughput ratio
workyard/raw`` (burst sagas/s, the lower of SQLite and PostgreSQL over raw) and ``paced p50 ratio
workyard/raw`` (paced p50, the higher of SQLite and PostgreSQL over raw).

Every measurement also prints what other processes on the host took meanwhile (% of one core);
the summary names the runs where that passed 25%, whose figures do not compare. On a shared
machine, --wait-quiet S waits up to S seconds for a quiet host before each measurement. A full
run with the defaults takes about 7 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from celery import chain  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.pacing import (  # noqa: E402
    PostgresListenWatcher,
    RedisListWatcher,
    SqlitePollWatcher,
    TaskEventLog,
    Watcher,
    drop_finish_trigger,
    install_finish_trigger,
    pace,
    postgres_conninfo,
)
from bench.saga_segments import SagaTimes, load_saga_times, print_breakdown, print_broker_wait_by_credit  # noqa: E402
from bench.support import log, pct, proc_cpu_s, scratch_database, stop_cleanly_on_sigterm  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.tables import SagaRun  # noqa: E402
from orchestrator.local.embedded import start_redis  # noqa: E402
from orchestrator.local.stack import Stack, StackOptions, WorkerSpec  # noqa: E402
from orchestrator.sagas.submit import submit_saga  # noqa: E402
from orchestrator.sagas.templates import parse_template, register_template  # noqa: E402

CONCURRENCY = 2
STEPS = ("a", "b", "c")
TEMPLATE = {
    "name": "bench.noop",
    "version": "1.0.0",
    "steps": [{"name": n, "capability": "bench", "handler": f"bench_{n}"} for n in STEPS],
}
RAW_DONE = "bench:raw:done"
WARM_UP = 20
# How long a paced run waits, after its last due time, for sagas still running: past it they
# count as unfinished (latency infinite), the backlog the run could not work off.
PACED_DRAIN_S = 60.0
# Between the warm-up and the idle measurement: the warm-up's outbox deletions and the like.
SETTLE_S = 1.0
WORKYARD_SIDES = ("sqlite", "postgres")
# Other processes busier than this (% of one core) during a run: the summary names the run, as
# one whose figures do not compare (2 cores: that much of one is a large share of the machine).
BUSY_HOST_PCT = 25.0
# --wait-quiet waits for the whole host to be below this (% of one core) before a measurement.
QUIET_HOST_PCT = 15.0


@dataclass
class Bench:
    """What every run shares: the Redis (broker and store), its process, a scratch dir, the options."""

    args: argparse.Namespace
    broker: str
    redis_url: str
    redis_pid: int
    workdir: Path


@dataclass
class Burst:
    """A burst run's figures."""

    rate: float
    p50: float
    p99: float
    cpu_ms: float
    # What other processes on the host spent meanwhile, % of one core.
    others_pct: float


@dataclass
class Paced:
    """A paced run's figures; ``times`` are workyard's saga timelines, ``finish_to_seen`` the raw
    chain's gaps between its last task's finish and the watcher seeing it."""

    p50: float
    p99: float
    cpu_ms: float
    others_pct: float
    unfinished: int
    times: list[SagaTimes] = field(default_factory=list)
    finish_to_seen: list[float] = field(default_factory=list)
    events: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class SideRun:
    """One side's run in one round."""

    side: str
    load: tuple[float, float, float]
    idle_pct: float | None = None
    paced: Paced | None = None
    burst: Burst | None = None


# -- CPU -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of a process (and, by default, its children) so far (Linux /proc)."""
    total = proc_cpu_s(pid)
    if total is None:
        return 0.0
    if not children:
        return total
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += cpu_seconds(int(child))
    except (OSError, ValueError):
        pass
    return total


class PostgresBackends:
    """CPU of the PostgreSQL backends that serve one run: those whose application_name is the
    run's (its URL sets it). Other sessions on the server (someone's tests) are not counted, nor
    the server's shared processes (WAL writer, checkpointer). A backend that exits between two
    readings takes its CPU with it, so this can only undercount."""

    def __init__(self, url: str, application_name: str):
        self.application_name = application_name
        self.conn = psycopg.connect(postgres_conninfo(url, "workyard-bench-admin"), autocommit=True)

    def __call__(self) -> float:
        pids = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
        ).fetchall()
        return sum(cpu_seconds(int(pid), children=False) for (pid,) in pids)

    def close(self) -> None:
        self.conn.close()


def host_ticks() -> list[int]:
    """This machine's CPU time so far by state (user, nice, system, idle, ..., steal), in ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_snapshot(pids: dict[str, int], *, postgres: Callable[[], float] | None = None) -> dict[str, Any]:
    # The submitter is the parent of every other process here: count only its own CPU.
    snapshot: dict[str, Any] = {name: cpu_seconds(pid, children=name != "submitter") for name, pid in pids.items()}
    if postgres is not None:
        snapshot["postgres"] = postgres()
    snapshot["host"] = host_ticks()
    return snapshot


def cpu_spent(before: dict[str, Any], after: dict[str, Any], watcher_s: float = 0.0) -> dict[str, float]:
    """CPU seconds per process between two snapshots; the submitter's without the watcher's thread."""
    spent = {name: after[name] - before[name] for name in before if name != "host"}
    if "submitter" in spent:
        spent["submitter"] = max(0.0, spent["submitter"] - watcher_s)
    return spent


def host_figures(before: dict[str, Any], after: dict[str, Any], ours_s: float) -> tuple[float, float]:
    """The host's steal (% of its time) and what processes other than this run's spent meanwhile
    (% of one core). Steal is time the hypervisor gave other guests; others are, say, someone's
    tests on the same machine. Either slows a run and inflates its CPU times, so figures from runs
    with much of either do not compare."""
    ticks = [b - a for a, b in zip(before["host"], after["host"], strict=True)]
    hz = os.sysconf("SC_CLK_TCK")
    wall_s = sum(ticks) / hz / (os.cpu_count() or 1)
    steal = ticks[7] / max(1, sum(ticks)) * 100 if len(ticks) > 7 else 0.0
    busy_s = (sum(ticks) - ticks[3] - ticks[4] - (ticks[7] if len(ticks) > 7 else 0)) / hz  # not idle, iowait, steal
    return steal, max(0.0, busy_s - ours_s) / max(wall_s, 1e-9) * 100


def print_cpu(before: dict[str, Any], after: dict[str, Any], n: int, watcher_s: float = 0.0) -> tuple[float, float]:
    """Print CPU ms per saga per process; returns their sum and the other processes' share of the
    host meanwhile (% of one core)."""
    spent = cpu_spent(before, after, watcher_s)
    parts = [f"{name} {s / n * 1000:.1f}" for name, s in spent.items()]
    if watcher_s:
        parts.append(f"(watcher {watcher_s / n * 1000:.2f}, not counted)")
    total = sum(spent.values()) / n * 1000
    steal, others = host_figures(before, after, sum(spent.values()) + watcher_s)
    print(
        f"{'':<24} CPU ms per saga {total:.1f}: "
        + ", ".join(parts)
        + f"   (host: steal {steal:.0f}%, other processes {others:.0f}% of a core)",
        flush=True,
    )
    return total, others


def wait_for_quiet_host(bench: Bench) -> None:
    """With --wait-quiet S: wait up to S seconds until the whole host is below QUIET_HOST_PCT of a
    core for a second (this side's idle processes included), so a measurement does not start in
    the middle of someone else's test run. It cannot keep them away once it started: the
    figures still say what others took meanwhile."""
    limit_s: float = bench.args.wait_quiet
    if limit_s <= 0:
        return
    hz = os.sysconf("SC_CLK_TCK")
    began = time.monotonic()
    while True:
        before = host_ticks()
        time.sleep(1.0)
        ticks = [b - a for a, b in zip(before, host_ticks(), strict=True)]
        busy_pct = (sum(ticks) - ticks[3] - ticks[4]) / hz * 100  # over one second: % of one core
        waited = time.monotonic() - began
        if busy_pct < QUIET_HOST_PCT:
            if waited > 2:
                log(f"waited {waited:.0f} s for a quiet host")
            return
        if waited > limit_s:
            log(f"the host stayed busy ({busy_pct:.0f}% of a core) for {limit_s:.0f} s; measuring anyway")
            return


def measure_idle(bench: Bench, pids: dict[str, int], postgres: Callable[[], float] | None) -> float:
    """CPU of the side's processes over --idle-s seconds with nothing submitted, as % of one core."""
    idle_s: float = bench.args.idle_s
    time.sleep(SETTLE_S)
    wait_for_quiet_host(bench)
    system = {name: pid for name, pid in pids.items() if name != "submitter"}
    before = cpu_snapshot(system, postgres=postgres)
    time.sleep(idle_s)
    after = cpu_snapshot(system, postgres=postgres)
    spent = cpu_spent(before, after)
    total = sum(spent.values()) / idle_s * 100
    parts = ", ".join(f"{name} {s / idle_s * 100:.2f}" for name, s in spent.items())
    _, others = host_figures(before, after, sum(spent.values()))
    print(f"{'':<24} idle {idle_s:.0f} s: {total:.2f}% of a core ({parts}; other processes {others:.0f}%)", flush=True)
    return total


# -- reporting -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return "unfinished" if math.isinf(value) else f"{value * 1000:.1f}"


def report_burst(label: str, n: int, elapsed: float, latencies: list[float]) -> float:
    rate = n / elapsed
    print(
        f"{label + ' burst':<24} {rate:8.1f} sagas/s   p50 {pct(latencies, 0.5) * 1000:7.1f} ms   "
        f"p99 {pct(latencies, 0.99) * 1000:7.1f} ms   ({n} in {elapsed:.2f} s)",
        flush=True,
    )
    return rate


def report_paced(label: str, rate: float, due: list[float], began: list[float], latencies: list[float]) -> None:
    late = [b - d for b, d in zip(began, due, strict=True)]
    unfinished = sum(1 for v in latencies if math.isinf(v))
    print(
        f"{label + ' paced':<24} {rate:6.1f}/s open loop   p50 {ms(pct(latencies, 0.5)):>7} ms   "
        f"p99 {ms(pct(latencies, 0.99)):>7} ms   max {ms(max(latencies)):>7} ms   ({len(latencies)} sagas"
        + (f", {unfinished} unfinished after {PACED_DRAIN_S:.0f} s" if unfinished else "")
        + f"; submitter late p99 {pct(late, 0.99) * 1000:.1f} ms, max {max(late) * 1000:.1f} ms)",
        flush=True,
    )


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# -- the raw chain -------------------------------------------------------------------------------


def run_raw(bench: Bench, *, events: bool = False) -> SideRun:
    label = "raw chain, events on" if events else "raw celery chain"
    run = SideRun("raw_events" if events else "raw", loadavg())
    print(f"{label} (load average {run.load[0]:.2f})", flush=True)
    env = dict(
        os.environ, BENCH_BROKER_URL=bench.broker, BENCH_REDIS_URL=bench.redis_url, BENCH_EVENTS="1" if events else ""
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.raw_chain_app",
            "worker",
            "-Q",
            "raw",
            "-c",
            str(CONCURRENCY),
            "-P",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"raw@{os.getpid()}",
        ],
        cwd=ROOT,
        env=env,
        stdout=(bench.workdir / "raw-worker.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    os.environ.update(BENCH_BROKER_URL=bench.broker, BENCH_REDIS_URL=bench.redis_url)
    from bench import raw_chain_app as raw

    raw.app.conf.task_send_sent_event = events

    books = redis.Redis.from_url(bench.redis_url)
    try:

        def burst(count: int, offset: int) -> tuple[dict[int, float], float]:
            books.delete(RAW_DONE)
            submitted: dict[int, float] = {}
            start = time.time()
            for i in range(offset, offset + count):
                submitted[i] = time.time()
                chain(raw.a.s(i), raw.b.s(), raw.c.s()).apply_async()
            while books.llen(RAW_DONE) < count:
                time.sleep(0.01)
            return submitted, start

        burst(WARM_UP, 10_000_000)  # warm-up: pool processes, connections
        pids = {"submitter": os.getpid(), "worker": worker.pid, "redis": bench.redis_pid}
        args = bench.args
        if args.idle_s:
            run.idle_pct = measure_idle(bench, pids, None)
        if args.mode in ("paced", "both"):
            books.delete(RAW_DONE)
            wait_for_quiet_host(bench)
            watcher = RedisListWatcher(bench.redis_url, RAW_DONE)
            watcher.start()
            before = cpu_snapshot(pids)
            due, began = pace(
                args.paced_sagas, args.rate, lambda i: chain(raw.a.s(i), raw.b.s(), raw.c.s()).apply_async()
            )
            watcher.wait(args.paced_sagas, due[-1] + PACED_DRAIN_S - time.time())
            after = cpu_snapshot(pids)
            watcher.stop()
            latencies = [watcher.seen.get(str(i), math.inf) - due[i] for i in range(args.paced_sagas)]
            report_paced(label, args.rate, due, began, latencies)
            cpu, others = print_cpu(before, after, args.paced_sagas, watcher.cpu_s)
            gaps = [watcher.seen[k] - watcher.finished[k] for k in watcher.seen]
            run.paced = Paced(
                pct(latencies, 0.5),
                pct(latencies, 0.99),
                cpu,
                others,
                sum(1 for v in latencies if math.isinf(v)),
                finish_to_seen=gaps,
            )
        if args.mode in ("burst", "both"):
            wait_for_quiet_host(bench)
            before = cpu_snapshot(pids)
            submitted, start = burst(args.sagas, 0)
            after = cpu_snapshot(pids)
            entries = [e.decode() if isinstance(e, bytes) else e for e in books.lrange(RAW_DONE, 0, -1)]
            done = {int(k): float(t) for k, t in (e.split() for e in entries)}
            latencies = [done[i] - submitted[i] for i in submitted]
            rate = report_burst(label, args.sagas, max(done.values()) - start, latencies)
            cpu, others = print_cpu(before, after, args.sagas)
            run.burst = Burst(rate, pct(latencies, 0.5), pct(latencies, 0.99), cpu, others)
        return run
    finally:
        books.close()
        worker.terminate()
        worker.wait(timeout=30)


# -- workyard ------------------------------------------------------------------------------------


@contextmanager
def database(bench: Bench, side: str, tag: str) -> Iterator[tuple[str, str]]:
    """(URL, application name) of an empty database for one run: a SQLite file, or a scratch schema."""
    application_name = f"workyard-bench-{tag}"
    if side == "sqlite":
        yield f"sqlite:///{bench.workdir / f'{tag}.db'}", application_name
        return
    with scratch_database(bench.args.postgres, prefix="bench_sagas", keep=False) as url:
        named = make_url(url).update_query_dict({"application_name": application_name})
        yield named.render_as_string(hide_password=False), application_name


def run_workyard(bench: Bench, side: str, tag: str, *, trace: bool = False) -> SideRun:
    args = bench.args
    label = f"workyard ({side})" + (", traced" if trace else "")
    run = SideRun(side, loadavg())
    print(f"{label} (load average {run.load[0]:.2f})", flush=True)
    with database(bench, side, tag) as (url, application_name):
        settings = Settings(
            data_dir=bench.workdir / tag, database_url=url, broker_url=bench.broker, redis_url=bench.redis_url
        )
        stack = Stack(
            settings,
            StackOptions(
                workers=[WorkerSpec(["bench"], ["bench.noop_handlers"], CONCURRENCY)],
                api=False,
                flower=False,
                # The baseline's worker logs at WARNING too: per-task INFO lines are not what is measured.
                extra_env={"WORKYARD_LOG_LEVEL": "WARNING"},
            ),
        )
        backends = PostgresBackends(url, application_name) if side == "postgres" else None
        events = TaskEventLog(stack.wiring.app) if trace else None
        try:
            stack.start()
            register_template(stack.wiring.sessions, parse_template(TEMPLATE))
            if events is not None:
                events.start()

            def burst(count: int) -> tuple[list[str], float]:
                start = time.time()
                ids = []
                for i in range(count):
                    submitted = submit_saga(stack.wiring.sessions, settings, template="bench.noop", input={"n": i})
                    stack.wiring.dispatcher.publish(submitted.outbox)
                    ids.append(submitted.saga.id)
                while True:
                    with stack.wiring.sessions() as session:
                        left = session.scalar(
                            select(func.count()).where(SagaRun.id.in_(ids), SagaRun.finished_at.is_(None))
                        )
                    if not left:
                        return ids, start
                    time.sleep(0.2)

            burst(WARM_UP)
            pids = {"submitter": os.getpid(), "redis": bench.redis_pid}
            pids.update({c.name: c.process.pid for c in stack.supervisor.children})
            if args.idle_s and not trace:
                run.idle_pct = measure_idle(bench, pids, backends)
            if trace or args.mode in ("paced", "both"):
                run.paced = paced_workyard(bench, stack, settings, url, label, pids, backends, events, tag)
            if not trace and args.mode in ("burst", "both"):
                wait_for_quiet_host(bench)
                before = cpu_snapshot(pids, postgres=backends)
                ids, start = burst(args.sagas)
                after = cpu_snapshot(pids, postgres=backends)
                with stack.wiring.sessions() as session:
                    rows = session.execute(
                        select(SagaRun.created_at, SagaRun.finished_at, SagaRun.state).where(SagaRun.id.in_(ids))
                    ).all()
                assert all(r.state == "completed" for r in rows), "some bench sagas did not complete"
                latencies = [(r.finished_at - r.created_at).total_seconds() for r in rows]
                end = max(r.finished_at for r in rows).timestamp()
                rate = report_burst(label, args.sagas, end - start, latencies)
                cpu, others = print_cpu(before, after, args.sagas)
                run.burst = Burst(rate, pct(latencies, 0.5), pct(latencies, 0.99), cpu, others)
            return run
        finally:
            if events is not None:
                events.stop()
            if backends is not None:
                backends.close()
            stack.stop()


def paced_workyard(
    bench: Bench,
    stack: Stack,
    settings: Settings,
    url: str,
    label: str,
    pids: dict[str, int],
    backends: PostgresBackends | None,
    events: TaskEventLog | None,
    tag: str,
) -> Paced:
    args = bench.args
    n = args.trace_sagas if events is not None else args.paced_sagas
    watcher: Watcher
    if backends is not None:
        channel = f"bench_saga_finished_{tag}"
        install_finish_trigger(url, channel)
        watcher = PostgresListenWatcher(url, channel)
    else:
        watcher = SqlitePollWatcher(url.removeprefix("sqlite:///"))
    ids = [""] * n

    def submit(i: int) -> None:
        submitted = submit_saga(stack.wiring.sessions, settings, template="bench.noop", input={"n": i})
        watcher.expect(submitted.saga.id)
        stack.wiring.dispatcher.publish(submitted.outbox)
        ids[i] = submitted.saga.id

    wait_for_quiet_host(bench)
    watcher.start()
    try:
        before = cpu_snapshot(pids, postgres=backends)
        due, began = pace(n, args.rate, submit)
        watcher.wait(n, due[-1] + PACED_DRAIN_S - time.time())
        after = cpu_snapshot(pids, postgres=backends)
    finally:
        watcher.stop()
        if backends is not None:
            drop_finish_trigger(url)
    latencies = [watcher.seen.get(saga_id, math.inf) - at for saga_id, at in zip(ids, due, strict=True)]
    report_paced(label, args.rate, due, began, latencies)
    cpu, others = print_cpu(before, after, n, watcher.cpu_s)
    return Paced(
        pct(latencies, 0.5),
        pct(latencies, 0.99),
        cpu,
        others,
        sum(1 for v in latencies if math.isinf(v)),
        times=load_saga_times(stack.wiring.sessions, ids, due, watcher.seen),
        events=dict(events.times) if events is not None else {},
    )


# -- the summary ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(runs: list[SideRun], sides: list[str], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Print the table of medians (and each round's figures); returns the median burst rate and
    paced p50 per side."""
    rates: dict[str, float] = {}
    p50s: dict[str, float] = {}
    print(f"-- summary: median of {rounds} round(s), each round's figures in brackets", flush=True)
    print(
        f"{'side':<11} {'burst sagas/s':>14} {'burst p50 ms':>13} {'paced p50 / p99 ms':>19} "
        f"{'CPU ms/saga burst / paced':>26} {'idle % core':>12}"
    )
    for side in sides:
        mine = [r for r in runs if r.side == side]
        bursts = [r.burst for r in mine if r.burst is not None]
        paced = [r.paced for r in mine if r.paced is not None]
        idles = [r.idle_pct for r in mine if r.idle_pct is not None]
        rates[side] = median([b.rate for b in bursts])
        p50s[side] = median([p.p50 for p in paced])
        p99 = median([p.p99 for p in paced])
        print(
            f"{side:<11} {rates[side]:14.1f} {median([b.p50 for b in bursts]) * 1000:13.1f} "
            f"{ms(p50s[side]):>9} / {ms(p99):>7} "
            f"{median([b.cpu_ms for b in bursts]):14.1f} / {median([p.cpu_ms for p in paced]):<9.1f} "
            f"{median(idles):12.2f}",
            flush=True,
        )
    for side in sides:
        mine = [r for r in runs if r.side == side]
        parts = []
        for i, r in enumerate(mine, 1):
            figures = [
                f"burst {r.burst.rate:.1f}/s p50 {r.burst.p50 * 1000:.0f} ms (others {r.burst.others_pct:.0f}%)"
                if r.burst
                else "",
                f"paced p50 {ms(r.paced.p50)} p99 {ms(r.paced.p99)} ms (others {r.paced.others_pct:.0f}%)"
                if r.paced
                else "",
                f"idle {r.idle_pct:.2f}%" if r.idle_pct is not None else "",
            ]
            parts.append(f"[{i}: " + ", ".join(f for f in figures if f) + f"; load {r.load[0]:.2f}]")
        print(f"  {side:<11} " + " ".join(parts), flush=True)
    busy = [
        f"{r.side} round {sum(1 for q in runs[: i + 1] if q.side == r.side)}"
        for i, r in enumerate(runs)
        if max((m.others_pct for m in (r.burst, r.paced) if m is not None), default=0.0) > BUSY_HOST_PCT
    ]
    if busy:
        print(
            f"  other processes took more than {BUSY_HOST_PCT:.0f}% of a core during: {', '.join(busy)}; "
            "their figures do not compare with the rest",
            flush=True,
        )
    return rates, p50s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("burst", "paced", "both"), default="both")
    parser.add_argument("--sagas", type=int, default=1000, help="sagas per burst (default 1000)")
    parser.add_argument("--paced-sagas", type=int, default=1000, help="sagas per paced run (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="paced submits per second (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, order rotated; medians (default 3)")
    parser.add_argument(
        "--idle-s", type=float, default=10.0, help="seconds of an idle stack to measure per run (0: skip; default 10)"
    )
    parser.add_argument(
        "--no-trace", dest="trace", action="store_false", help="skip the traced paced run per workyard backend"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement, wait up to S seconds for the host to be quiet (shared machines; default 0: off)",
    )
    parser.add_argument("--trace-sagas", type=int, default=500, help="sagas in a traced paced run (default 500)")
    parser.add_argument(
        "--raw-events",
        action="store_true",
        help="also run the baseline with Celery task events on (-E, sent events), as workyard's workers run",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WORKYARD_BENCH_DATABASE_URL"),
        help="PostgreSQL URL (postgresql+psycopg://...); each run gets a scratch schema, dropped afterwards",
    )
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp:
        workdir = Path(tmp)
        socket_path = workdir / "redis.sock"
        redis_server = start_redis(workdir, socket_path)
        bench = Bench(
            args,
            f"redis+socket://{socket_path}?virtual_host=0",
            f"unix://{socket_path}?db=0",
            redis_server.pid,
            workdir,
        )
        try:
            print(
                f"three-step no-op sagas: mode {args.mode}, burst {args.sagas}, paced {args.paced_sagas} at "
                f"{args.rate:g}/s, {args.rounds} round(s); prefork concurrency {CONCURRENCY}, one Redis "
                f"({socket_path.name}), {os.cpu_count()} cores, load average "
                + " ".join(f"{v:.2f}" for v in loadavg()),
                flush=True,
            )
            sides = ["raw"] + (["raw_events"] if args.raw_events else []) + ["sqlite"]
            sides += ["postgres"] if args.postgres else []
            runs: list[SideRun] = []
            for round_no in range(args.rounds):
                # Rotated, so that drift on a busy machine (and going first or last) hits every side.
                order = sides[round_no % len(sides) :] + sides[: round_no % len(sides)]
                print(f"-- round {round_no + 1} of {args.rounds}: {', '.join(order)}", flush=True)
                for side in order:
                    if side.startswith("raw"):
                        runs.append(run_raw(bench, events=side == "raw_events"))
                    else:
                        runs.append(run_workyard(bench, side, f"{side}{round_no + 1}"))
            traced: dict[str, Paced] = {}
            if args.trace and args.mode in ("paced", "both"):
                print("-- traced paced runs (Celery task events captured; figures not in the summary)", flush=True)
                for side in (s for s in sides if s in WORKYARD_SIDES):
                    paced = run_workyard(bench, side, f"{side}-traced", trace=True).paced
                    assert paced is not None
                    traced[side] = paced
            rates, p50s = summarise(runs, sides, args.rounds)
            if args.mode in ("paced", "both"):
                for side in (s for s in sides if s in WORKYARD_SIDES):
                    times = [t for r in runs if r.side == side and r.paced for t in r.paced.times]
                    print_breakdown(f"-- where a paced saga's time goes, workyard on {side}, all rounds", times, STEPS)
                for side, paced in traced.items():
                    print_breakdown(
                        f"-- the same, split with task events, workyard on {side} (one traced run: "
                        f"p50 {ms(paced.p50)} ms, p99 {ms(paced.p99)} ms)",
                        paced.times,
                        STEPS,
                        paced.events,
                    )
                    if paced.events:
                        print_broker_wait_by_credit(
                            f"-- published → worker received, by what the worker held at the publish, {side}",
                            paced.events,
                            CONCURRENCY,
                        )
                gaps = [g for r in runs if r.side == "raw" and r.paced for g in r.paced.finish_to_seen]
                if gaps:
                    print(
                        f"-- raw chain, last task's finish → seen by client: p50 {pct(gaps, 0.5) * 1000:.2f} ms, "
                        f"p90 {pct(gaps, 0.9) * 1000:.2f} ms",
                        flush=True,
                    )
            print(
                f"-- took {(time.monotonic() - began) / 60:.1f} min; load average now "
                + " ".join(f"{v:.2f}" for v in loadavg()),
                flush=True,
            )
            workyard = [s for s in sides if s in WORKYARD_SIDES]
            if args.mode in ("burst", "both"):
                lowest = min(workyard, key=lambda s: rates[s])
                print(f"throughput ratio workyard/raw: {rates[lowest] / rates['raw']:.2f}")
            if args.mode in ("paced", "both"):
                highest = max(workyard, key=lambda s: p50s[s])
                print(f"paced p50 ratio workyard/raw: {p50s[highest] / p50s['raw']:.2f}")
        finally:
            redis_server.terminate()
            redis_server.wait(timeout=10)
            log(f"bench finished in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
