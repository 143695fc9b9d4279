"""Throughput of workyard sagas against raw Celery chains, on the same Redis and worker concurrency.

    python bench/saga_throughput.py [--sagas 1000] [--postgres URL]

(a) N three-step no-op sagas through workyard (every step persisted), and (b) the same work as
raw Celery chains ``a | b | c``; prints sagas/s and p50/p99 end-to-end latency for both, on
SQLite and, with --postgres (or WORKYARD_BENCH_DATABASE_URL), on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import chain  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.support import pct, proc_cpu_s  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.tables import SagaRun  # noqa: E402
from orchestrator.local.embedded import start_redis  # noqa: E402
from orchestrator.local.stack import Stack, StackOptions, WorkerSpec  # noqa: E402
from orchestrator.sagas.submit import submit_saga  # noqa: E402
from orchestrator.sagas.templates import parse_template, register_template  # noqa: E402

CONCURRENCY = 2
REDIS_PID: list[int] = []
TEMPLATE = {
    "name": "bench.noop",
    "version": "1.0.0",
    "steps": [{"name": n, "capability": "bench", "handler": f"bench_{n}"} for n in ("a", "b", "c")],
}


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


def postgres_seconds() -> float:
    """CPU of this machine's PostgreSQL server processes so far: its backends serve the run.
    A backend that exits between two readings takes its CPU with it, so this can only undercount."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(proc.name), children=False)
        except OSError:
            continue
    return total


def host_ticks() -> list[int]:
    """This machine's CPU time so far by state (user, nice, system, idle, ..., steal), in ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_snapshot(pids: dict[str, int], *, postgres: bool = False) -> dict[str, Any]:
    # The submitter is the parent of every other process here: count only its own CPU.
    snapshot: dict[str, Any] = {name: cpu_seconds(pid, children=name != "submitter") for name, pid in pids.items()}
    if postgres:
        snapshot["postgres"] = postgres_seconds()
    snapshot["host"] = host_ticks()
    return snapshot


def print_cpu(before: dict[str, Any], after: dict[str, Any], n: int) -> None:
    parts = [f"{name} {(after[name] - before[name]) / n * 1000:.1f}" for name in before if name != "host"]
    # Time the hypervisor gave to other guests: on a shared host it slows a run and inflates the
    # CPU times above, so figures from runs with much steal do not compare.
    ticks = [b - a for a, b in zip(before["host"], after["host"], strict=True)]
    steal = ticks[7] / max(1, sum(ticks)) * 100 if len(ticks) > 7 else 0.0
    print(f"{'':<22} CPU ms per saga: " + ", ".join(parts) + f"   (host steal {steal:.0f}%)", flush=True)


def report(label: str, n: int, elapsed: float, latencies: list[float]) -> float:
    rate = n / elapsed
    print(
        f"{label:<22} {rate:8.1f} sagas/s   p50 {pct(latencies, 0.5) * 1000:7.1f} ms   "
        f"p99 {pct(latencies, 0.99) * 1000:7.1f} ms   ({n} in {elapsed:.2f} s)",
        flush=True,
    )
    return rate


def run_raw(n: int, broker: str, redis_url: str, workdir: Path, *, events: bool = False) -> float:
    env = dict(os.environ, BENCH_BROKER_URL=broker, BENCH_REDIS_URL=redis_url, BENCH_EVENTS="1" if events else "")
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
        stdout=(workdir / "raw-worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    os.environ.update(BENCH_BROKER_URL=broker, BENCH_REDIS_URL=redis_url)
    from bench import raw_chain_app as raw

    raw.app.conf.task_send_sent_event = events

    books = redis.Redis.from_url(redis_url)
    try:

        def burst(count: int, offset: int) -> tuple[dict[int, float], float]:
            books.delete("bench:raw:done")
            submitted: dict[int, float] = {}
            start = time.time()
            for i in range(offset, offset + count):
                submitted[i] = time.time()
                chain(raw.a.s(i), raw.b.s(), raw.c.s()).apply_async()
            while books.llen("bench:raw:done") < count:
                time.sleep(0.01)
            return submitted, start

        burst(20, 10_000_000)  # warm-up: pool processes, connections
        pids = {"submitter": os.getpid(), "worker": worker.pid, "redis": REDIS_PID[0]}
        before = cpu_snapshot(pids)
        submitted, start = burst(n, 0)
        after = cpu_snapshot(pids)
        entries = [e.decode() if isinstance(e, bytes) else e for e in books.lrange("bench:raw:done", 0, -1)]
        done = {int(k): float(t) for k, t in (e.split() for e in entries)}
        latencies = [done[i] - submitted[i] for i in submitted]
        label = "raw chain, events on" if events else "raw celery chain"
        rate = report(label, n, max(done.values()) - start, latencies)
        print_cpu(before, after, n)
        return rate
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def run_workyard(n: int, database_url: str, broker: str, redis_url: str, workdir: Path, label: str) -> float:
    settings = Settings(
        data_dir=workdir / f"{label}-{time.monotonic_ns()}",
        database_url=database_url,
        broker_url=broker,
        redis_url=redis_url,
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
    stack.start()
    try:
        register_template(stack.wiring.sessions, parse_template(TEMPLATE))

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

        burst(20)
        pids = {"submitter": os.getpid(), "redis": REDIS_PID[0]}
        pids.update({c.name: c.process.pid for c in stack.supervisor.children})
        on_postgres = database_url.startswith("postgresql")
        before = cpu_snapshot(pids, postgres=on_postgres)
        ids, start = burst(n)
        after = cpu_snapshot(pids, postgres=on_postgres)
        with stack.wiring.sessions() as session:
            rows = session.execute(
                select(SagaRun.created_at, SagaRun.finished_at, SagaRun.state).where(SagaRun.id.in_(ids))
            ).all()
        assert all(r.state == "completed" for r in rows), "some bench sagas did not complete"
        latencies = [(r.finished_at - r.created_at).total_seconds() for r in rows]
        end = max(r.finished_at for r in rows).timestamp()
        rate = report(f"workyard ({label})", n, end - start, latencies)
        print_cpu(before, after, n)
        return rate
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds per side (default 3)")
    parser.add_argument(
        "--raw-events",
        action="store_true",
        help="also run the baseline with Celery task events on (-E, sent events), as workyard's workers run",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WORKYARD_BENCH_DATABASE_URL"),
        help="PostgreSQL URL (postgresql+psycopg://...); its tables are created if missing",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp:
        workdir = Path(tmp)
        socket_path = workdir / "redis.sock"
        redis_server = start_redis(workdir, socket_path)
        REDIS_PID.append(redis_server.pid)
        broker, redis_url = f"redis+socket://{socket_path}?virtual_host=0", f"unix://{socket_path}?db=0"
        try:
            print(
                f"{args.sagas} three-step no-op sagas, prefork concurrency {CONCURRENCY}, "
                f"one Redis ({socket_path.name}), {os.cpu_count()} cores",
                flush=True,
            )
            if args.postgres:
                from orchestrator.storage.db import make_engine
                from orchestrator.storage.migrate import upgrade

                engine = make_engine(args.postgres)
                upgrade(engine)
                engine.dispose()
            best: dict[str, float] = {}
            # Rounds alternate baseline and workyard so that drift on a busy machine hits both.
            for round_no in range(1, args.rounds + 1):
                print(f"-- round {round_no} of {args.rounds}", flush=True)
                runs = {"raw": run_raw(args.sagas, broker, redis_url, workdir)}
                if args.raw_events:
                    runs["raw_events"] = run_raw(args.sagas, broker, redis_url, workdir, events=True)
                runs["sqlite"] = run_workyard(
                    args.sagas, f"sqlite:///{workdir / f'bench{round_no}.db'}", broker, redis_url, workdir, "sqlite"
                )
                if args.postgres:
                    runs["postgres"] = run_workyard(args.sagas, args.postgres, broker, redis_url, workdir, "postgres")
                for name, rate in runs.items():
                    best[name] = max(best.get(name, 0.0), rate)
            print(f"-- best of {args.rounds}: " + ", ".join(f"{k} {v:.1f} sagas/s" for k, v in best.items()))
            ratios = {name: rate / best["raw"] for name, rate in best.items() if not name.startswith("raw")}
            for name, ratio in ratios.items():
                print(f"ratio on {name}: {ratio:.2f}")
            worst = min(ratios, key=lambda k: ratios[k])
            lowest = f"  (lowest: {worst})" if len(ratios) > 1 else ""
            print(f"throughput ratio workyard/raw: {ratios[worst]:.2f}{lowest}")
        finally:
            redis_server.terminate()
            redis_server.wait(timeout=10)


if __name__ == "__main__":
    main()
