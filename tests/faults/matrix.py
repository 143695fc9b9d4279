"""The fault matrix: a whole stack on the default settings, a stream of order sagas (some failing on
purpose, some slow so that faults land mid-step), one fault injected in the middle, and what
became of every saga and every side effect.

``make faults`` runs every fault on SQLite and PostgreSQL with 200 sagas each and prints one table;
``make test`` runs a short version (tests/faults/test_matrix_sqlite.py, test_matrix_postgres.py). By hand::

    python -m tests.faults.matrix --sagas 200 --backends sqlite,postgres --faults worker,orchestrator

Each run owns its servers: a redis-server on a port of its own (AOF, ``appendfsync always``,
except where the fault is losing Redis's data) and, for PostgreSQL, a cluster made with initdb in
a temporary directory, so that faults can kill and restart them. Side effects are counted in a
file of the run's own (see ``tests/faults/handlers.py``), never in anything a fault touches.

What is measured, per fault:

- **lost**: sagas not finished (completed, compensated or compensation_failed) when the run ends;
- **twice**: steps whose effect happened more than once (same saga, step and phase);
- **out of order**: compensated sagas whose compensations did not run in reverse step order;
- **stale**: writes an account accepted with a fencing token another step's accepted write already
  had (the account refuses lower tokens, as a fencing-aware resource does; those are noted);
- **recover**: from the fault to the last of the sagas in flight at that moment finishing (a run with
  none in flight at the fault does not hold: it proved nothing).

A fault *holds* when lost, twice (except where Redis loses its data, reported apart), out of
order, stale and compensation_failed are 0, and every saga finished within ``RECOVERY_TARGET_S``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from config import keys
from config.settings import Settings
from models.enums import SagaState
from models.tables import DeadLetter, SagaRun, StepAttempt
from orchestrator.local.stack import Stack, StackOptions, WorkerSpec
from orchestrator.local.supervisor import Child, python_argv
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from tests.faults.handlers import TEMPLATE
from tests.faults.servers import PostgresServer, RedisServer, free_port

HANDLERS = ["tests.faults.handlers"]
RECOVERY_TARGET_S = 30.0
SUBMIT_PER_S = 25.0
# How long a run waits for its sagas after the last submit before counting the rest as lost.
SETTLE_S = 150.0
ACCOUNTS = 10
RABBITMQ_URL = os.environ.get("WORKYARD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass
class Run:
    """One fault run in progress: its stack, its servers, where effects go."""

    stack: Stack
    redis: RedisServer
    postgres: PostgresServer | None
    settings: Settings
    directory: Path
    notes: list[str] = field(default_factory=list)

    def children(self, prefix: str) -> list[Child]:
        return [c for c in self.stack.supervisor.children if c.name.startswith(prefix) and c.process.poll() is None]


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: what to do to the stack in the middle of the stream."""

    name: str
    what: str
    inject: Callable[[Run], None]
    settings: dict[str, Any] = field(default_factory=dict)
    # Redis keeps nothing (no AOF): finished steps may run again, reported apart.
    redis_persists: bool = True
    via_api: bool = False
    broker: str = "redis"
    only: tuple[str, ...] = ("sqlite", "postgres")
    # Why this machine cannot run it, or None (checked before the run).
    unavailable: Callable[[], str | None] = lambda: None
    # The second charge worker's clock can be stepped (see step_clock).
    stepped_clock: bool = False
    dead_expected: int | None = None


@dataclass
class Row:
    """What one fault run measured."""

    fault: str
    backend: str
    sagas: int = 0
    completed: int = 0
    compensated: int = 0
    compensation_failed: int = 0
    lost: int = 0
    twice: int = 0
    out_of_order: int = 0
    stale: int = 0
    recover_s: float | None = None
    twice_allowed: bool = False
    # Dead letters the fault must leave (garbage: one per message injected), and how many it did.
    dead_expected: int | None = None
    dead_letters: int = 0
    note: str = ""
    skipped: str | None = None

    @property
    def held(self) -> bool:
        return (
            self.skipped is None
            and self.lost == 0
            and (self.twice == 0 or self.twice_allowed)
            and self.out_of_order == 0
            and self.stale == 0
            and self.compensation_failed == 0
            and self.recover_s is not None
            and self.recover_s <= RECOVERY_TARGET_S
            and (self.dead_expected is None or self.dead_letters == self.dead_expected)
        )


# -- the faults -----------------------------------------------------------------------------------


def _kill_group(child: Child) -> None:
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()


def kill_pool_child(run: Run) -> None:
    worker = run.children("worker-fb")[0]
    children = _child_pids(worker.process.pid)
    for pid in children:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.notes.append(f"killed {len(children)} pool process(es) of {worker.name}")


def _child_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                # The field after the command (in parentheses, which may hold spaces) is the state, then the ppid.
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
    return found


def kill_worker(run: Run) -> None:
    worker = run.children("worker-fb")[0]
    _kill_group(worker)
    time.sleep(1.0)  # as a supervisor would, a moment later
    run.stack.start_worker(WorkerSpec(["fb"], HANDLERS))


def kill_orchestrator(run: Run) -> None:
    _kill_group(run.children("orchestrator")[0])  # one of two; the other carries on alone


def kill_api(run: Run) -> None:
    _kill_group(run.children("api")[0])
    time.sleep(1.0)
    run.stack.supervisor.spawn("api-restarted", python_argv("-m", "orchestrator.cli", "api"), run.stack.env)


def restart_redis(run: Run) -> None:
    run.redis.kill()
    time.sleep(1.0)
    run.redis.start()


def restart_redis_without_data(run: Run) -> None:
    run.redis.kill()
    run.redis.wipe()
    time.sleep(1.0)
    run.redis.start()


def pause_worker(run: Run) -> None:
    """SIGSTOP past the run claim (5 s) and the mutex lease (10 s), short of the visibility timeout."""
    worker = run.children("worker-fb")[0]
    os.killpg(worker.process.pid, signal.SIGSTOP)
    time.sleep(12.0)
    os.killpg(worker.process.pid, signal.SIGCONT)


def terminate_connections(run: Run) -> None:
    assert run.postgres is not None
    admin = psycopg_connect(run.postgres)
    killed = 0
    try:
        for _ in range(25):  # every 0.4 s for 10 s
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
                row = cursor.fetchone()
                killed += int(row[0]) if row else 0
            time.sleep(0.4)
    finally:
        admin.close()
    run.notes.append(f"{killed} connections terminated")


def psycopg_connect(server: PostgresServer) -> Any:
    import psycopg

    return psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True)


def restart_postgres(run: Run) -> None:
    assert run.postgres is not None
    run.postgres.restart()


def duplicate_everything(run: Run) -> None:
    """Nothing to do at the moment: every message of the run is sent twice (see its settings)."""


GARBAGE: list[bytes] = [
    b"\x00\xffnot json at all",
    b'{"body": "json, but not a kombu message"}',
    b"[1, 2, 3]",
]


def garbage_everywhere(run: Run) -> None:
    client = redis.Redis.from_url(run.redis.url(0))
    queues = ["cap.fa", "cap.fb", "cap.fc", "workyard.orchestrator"]
    for queue in queues:
        for raw in GARBAGE:
            client.lpush(queue, raw)
    # A well-formed task message of a task nobody registered.
    run.stack.wiring.app.send_task("workyard.no_such_task", args=[1], exchange=keys.STEP_EXCHANGE, routing_key="cap.fb")
    client.close()
    run.notes.append(f"{len(queues) * len(GARBAGE) + 1} garbage messages")


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def clock_env(directory: Path) -> dict[str, str]:
    """A worker whose clock follows the offset in a file (libfaketime, re-read on every call).
    Its monotonic clock jumps with the wall clock: libfaketime cannot step the wall clock alone
    without breaking ``time.sleep`` (EINVAL), which a real clock step does not do."""
    offset = directory / "clock-offset"
    offset.write_text("+0\n")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
    }


def step_clock(run: Run) -> None:
    """One charge worker's wall clock jumps an hour ahead (an NTP step, a VM restored)."""
    (run.directory / "clock-offset").write_text("+3600\n")


def _faketime_missing() -> str | None:
    return None if LIBFAKETIME.exists() else f"libfaketime not installed ({LIBFAKETIME}; apt-get install faketime)"


def restart_rabbitmq(run: Run) -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
    time.sleep(2.0)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)


def _rabbitmq_missing() -> str | None:
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not installed"
    status = subprocess.run(["rabbitmqctl", "status"], capture_output=True)
    return None if status.returncode == 0 else "rabbitmqctl cannot reach the local node"


FAULTS: list[Fault] = [
    Fault("pool-child", "kill -9 of a worker's pool processes", kill_pool_child),
    Fault("worker", "kill -9 of a whole worker, restarted a second later", kill_worker),
    Fault("orchestrator", "kill -9 of one of two orchestrators", kill_orchestrator),
    Fault("api", "kill -9 of the API while upstream submits through it", kill_api, via_api=True),
    Fault("redis-restart", "Redis killed and restarted (AOF, appendfsync always)", restart_redis),
    Fault(
        "redis-data-lost",
        "Redis killed and restarted without its data",
        restart_redis_without_data,
        redis_persists=False,
    ),
    Fault("worker-paused", "SIGSTOP of a worker for 12 s (past claim and lease)", pause_worker),
    Fault(
        "pg-terminate",
        "PostgreSQL connections terminated every 0.4 s for 10 s",
        terminate_connections,
        only=("postgres",),
    ),
    Fault("pg-restart", "PostgreSQL stopped (immediate) and started", restart_postgres, only=("postgres",)),
    Fault(
        "duplicates",
        "every message delivered twice",
        duplicate_everything,
        settings={"fault_duplicate_delivery": True},
    ),
    Fault("garbage", "garbage on every queue", garbage_everywhere, dead_expected=4 * len(GARBAGE) + 1),
    Fault(
        "clock-step",
        "one charge worker's clock jumps an hour ahead",
        step_clock,
        stepped_clock=True,
        unavailable=_faketime_missing,
    ),
    Fault(
        "rabbitmq-restart",
        "RabbitMQ as broker, its node restarted",
        restart_rabbitmq,
        broker="rabbitmq",
        unavailable=_rabbitmq_missing,
    ),
]


# -- one run --------------------------------------------------------------------------------------


def orders(run_id: str, count: int) -> list[dict[str, Any]]:
    """A mix: one in ten fails at ship (compensates charge and reserve), one in ten at charge
    (compensates reserve); a quarter have a slow charge, a quarter a slow reserve."""
    made = []
    for i in range(count):
        fail_at = {3: "ship", 7: "charge"}.get(i % 10)
        delay = {0: {"charge": 600}, 1: {"reserve": 300}}.get(i % 4, {})
        made.append({"tag": f"{run_id}-{i}", "account": f"acct-{i % ACCOUNTS}", "fail_at": fail_at, "delay_ms": delay})
    return made


@contextmanager
def servers(fault: Fault, backend: str, directory: Path) -> Iterator[tuple[RedisServer, PostgresServer | None]]:
    redis_server = RedisServer(directory / "redis", appendfsync="always" if fault.redis_persists else None)
    postgres = PostgresServer() if backend == "postgres" else None
    try:
        redis_server.start()
        if postgres is not None:
            postgres.start()
        yield redis_server, postgres
    finally:
        redis_server.stop()
        if postgres is not None:
            postgres.stop()


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    vhost = f"workyard-faults-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True, capture_output=True
    )
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def run_fault(fault: Fault, backend: str, count: int, directory: Path, log: Callable[[str], None] = print) -> Row:
    row = Row(fault.name, backend, twice_allowed=not fault.redis_persists, dead_expected=fault.dead_expected)
    if backend not in fault.only:
        row.skipped = f"{backend}: not a fault of this backend"
        return row
    why = fault.unavailable() or (PostgresServer.available() if backend == "postgres" else None)
    if why:
        row.skipped = why
        return row
    with servers(fault, backend, directory) as (redis_server, postgres), _broker(fault, redis_server) as broker_url:
        effects = directory / "effects.jsonl"
        token = secrets.token_urlsafe(24)
        settings = Settings(
            data_dir=directory / "data",
            database_url=f"sqlite:///{directory / 'workyard.db'}" if postgres is None else postgres.url,
            broker_url=broker_url,
            redis_url=redis_server.url(1),
            api_port=free_port(),
            flower_port=free_port(),
            admin_token=token,
            **fault.settings,
        )
        stepped = clock_env(directory) if fault.stepped_clock else {}
        workers = [
            WorkerSpec(["fa"], HANDLERS),
            WorkerSpec(["fb"], HANDLERS),
            WorkerSpec(["fb"], HANDLERS, env=stepped),
        ]
        workers.append(WorkerSpec(["fc"], HANDLERS))
        stack = Stack(
            settings,
            StackOptions(
                workers=workers,
                api=True,
                flower=False,
                orchestrators=2,
                extra_env={"WORKYARD_FAULT_EFFECTS": str(effects), "WORKYARD_LOG_LEVEL": "WARNING"},
            ),
        )
        try:
            stack.start()
            register_template(stack.wiring.sessions, parse_template(TEMPLATE))
            run = Run(stack, redis_server, postgres, settings, directory)
            _drive(run, fault, orders(uuid.uuid4().hex[:8], count), row, effects, log)
            # After what _drive measured (dead letters, unfinished sagas), not instead of it.
            row.note = "; ".join(note for note in [*run.notes, row.note] if note)
        finally:
            stack.stop()
    return row


@contextmanager
def _broker(fault: Fault, redis_server: RedisServer) -> Iterator[str]:
    if fault.broker == "rabbitmq":
        with rabbitmq_vhost() as url:
            yield url
    else:
        yield redis_server.url(0)


def _drive(
    run: Run, fault: Fault, batch: list[dict[str, Any]], row: Row, effects: Path, log: Callable[[str], None]
) -> None:
    submitted: list[str] = []
    at_fault: dict[str, Any] = {}
    inject_after = len(batch) // 3

    def submit_all() -> None:
        submit = _api_submitter(run) if fault.via_api else _python_submitter(run)
        for n, order in enumerate(batch):
            started = time.monotonic()
            if n == inject_after:
                at_fault["event"].set()
            submit(order)
            submitted.append(order["tag"])
            time.sleep(max(0.0, 1 / SUBMIT_PER_S - (time.monotonic() - started)))

    at_fault["event"] = threading.Event()
    submitter = threading.Thread(target=submit_all, name="submitter", daemon=True)
    submitter.start()
    at_fault["event"].wait()
    in_flight = _unfinished(run, list(submitted))
    t0 = datetime.now(UTC)
    log(f"  injecting with {len(submitted)} submitted, {len(in_flight)} in flight")
    fault.inject(run)
    submitter.join()
    deadline = time.monotonic() + SETTLE_S
    tags = [o["tag"] for o in batch]
    while time.monotonic() < deadline and _retrying(lambda: len(_unfinished(run, tags))) > 0:
        time.sleep(1.0)
    _measure(run, batch, row, effects, in_flight, t0)


def _python_submitter(run: Run) -> Callable[[dict[str, Any]], None]:
    def submit(order: dict[str, Any]) -> None:
        def once() -> None:
            done = submit_saga(
                run.stack.wiring.sessions,
                run.settings,
                template=TEMPLATE["name"],
                input=order,
                idempotence_key=order["tag"],
            )
            run.stack.wiring.dispatcher.publish(done.outbox)

        _retrying(once)

    return submit


def _api_submitter(run: Run) -> Callable[[dict[str, Any]], None]:
    """Upstream as it should be: every submit carries an Idempotency-Key and is retried until answered."""
    client = httpx.Client(base_url=run.settings.api_url, timeout=5.0)
    headers = {"Authorization": f"Bearer {run.settings.admin_token}"}

    def submit(order: dict[str, Any]) -> None:
        for _ in range(300):
            try:
                answer = client.post(
                    "/api/v1/sagas",
                    json={"template": TEMPLATE["name"], "input": order},
                    headers=headers | {"Idempotency-Key": order["tag"]},
                )
                if answer.status_code in (200, 202):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"could not submit {order['tag']} through the API")

    return submit


def _retrying(call: Callable[[], Any], tries: int = 200) -> Any:
    """The runner's own database calls ride out the faults it injects."""
    for attempt in range(tries):
        try:
            return call()
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def _unfinished(run: Run, tags: list[str]) -> list[str]:
    with run.stack.wiring.sessions() as session:
        done = {
            key
            for key, state in session.execute(
                select(SagaRun.idempotence_key, SagaRun.state).where(SagaRun.idempotence_key.in_(tags))
            )
            if SagaState(state).terminal
        }
    return [t for t in tags if t not in done]


def _measure(
    run: Run, batch: list[dict[str, Any]], row: Row, effects: Path, in_flight: list[str], t0: datetime
) -> None:
    tags = [o["tag"] for o in batch]

    def read() -> tuple[list[Any], int]:
        with run.stack.wiring.sessions() as session:
            sagas = list(
                session.execute(
                    select(SagaRun.id, SagaRun.idempotence_key, SagaRun.state, SagaRun.finished_at).where(
                        SagaRun.idempotence_key.in_(tags)
                    )
                )
            )
            dead = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
        return sagas, int(dead)

    sagas, dead = _retrying(read)
    row.sagas = len(batch)
    by_tag = {key: (state, finished) for _, key, state, finished in sagas}
    for tag in tags:
        state = by_tag.get(tag, (None, None))[0]
        if state == SagaState.completed:
            row.completed += 1
        elif state == SagaState.compensated:
            row.compensated += 1
        elif state == SagaState.compensation_failed:
            row.compensation_failed += 1
        else:
            row.lost += 1
    written = [json.loads(line) for line in effects.read_text().splitlines()] if effects.exists() else []
    lines = [e for e in written if not e.get("refused")]
    seen: dict[tuple[str, str, str], int] = defaultdict(int)
    for e in lines:
        seen[(e["tag"], e["step"], e["phase"])] += 1
    row.twice = sum(1 for n in seen.values() if n > 1)
    order = {s["name"]: i for i, s in enumerate(TEMPLATE["steps"])}
    compensations: dict[str, list[int]] = defaultdict(list)
    for e in lines:
        if e["phase"] == "compensate":
            index = order[e["step"]]
            if index not in compensations[e["tag"]]:
                compensations[e["tag"]].append(index)
    row.out_of_order = sum(1 for steps in compensations.values() if steps != sorted(steps, reverse=True))
    # The account accepted a write whose fencing token another step's accepted write already had.
    row.stale = sum(1 for e in lines if e.get("reused"))
    refused = len(written) - len(lines)
    if refused:
        run.notes.append(f"{refused} stale write(s) refused by fencing")
    if not in_flight:
        run.notes.append("no saga was in flight at the fault: nothing recovered, the run proves nothing")
    elif row.lost == 0:
        finished = [by_tag[t][1] for t in in_flight if by_tag.get(t, (None, None))[1] is not None]
        ends = [f.replace(tzinfo=UTC) if f.tzinfo is None else f for f in finished]
        row.recover_s = max(((end - t0).total_seconds() for end in ends), default=0.0)
    row.dead_letters = dead
    if dead or row.dead_expected:
        expected = f" of {row.dead_expected} expected" if row.dead_expected is not None else ""
        row.note = f"{dead} dead letter(s){expected}" + (f"; {row.note}" if row.note else "")
    if row.lost:
        waiting = [t for t in tags if by_tag.get(t, (None, None))[0] not in _FINAL][:3]
        unfinished = "unfinished: " + "; ".join(_retrying(lambda: _describe(run, waiting)))
        row.note = f"{row.note}; {unfinished}" if row.note else unfinished


_FINAL = {SagaState.completed, SagaState.compensated, SagaState.compensation_failed}


def _describe(run: Run, tags: list[str]) -> list[str]:
    """Where each of these sagas stands: its state and its attempts."""
    described = []
    with run.stack.wiring.sessions() as session:
        for tag in tags:
            saga = session.scalar(select(SagaRun).where(SagaRun.idempotence_key == tag))
            if saga is None:
                described.append(f"{tag}: never submitted")
                continue
            attempts = session.scalars(
                select(StepAttempt).where(StepAttempt.saga_id == saga.id).order_by(StepAttempt.id)
            )
            steps = ", ".join(f"{a.step_name}/{a.phase.value[0]}#{a.attempt} {a.outcome.value}" for a in attempts)
            described.append(f"{tag} ({saga.id}) {saga.state.value}: {steps}")
    return described


# -- the table ------------------------------------------------------------------------------------

COLUMNS = [
    ("fault", 18),
    ("db", 8),
    ("sagas", 5),
    ("completed", 9),
    ("compensated", 11),
    ("comp_failed", 11),
    ("lost", 4),
    ("twice", 5),
    ("out_of_order", 12),
    ("stale", 5),
    ("recover_s", 9),
    ("held", 4),
]


def table(rows: list[Row]) -> str:
    head = "  ".join(name.ljust(width) for name, width in COLUMNS) + "  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.skipped:
            lines.append(f"{r.fault.ljust(18)}  {r.backend.ljust(8)}  not run: {r.skipped}")
            continue
        twice = f"{r.twice}*" if r.twice_allowed and r.twice else str(r.twice)
        cells = [
            r.fault,
            r.backend,
            r.sagas,
            r.completed,
            r.compensated,
            r.compensation_failed,
            r.lost,
            twice,
            r.out_of_order,
            r.stale,
            "—" if r.recover_s is None else f"{r.recover_s:.1f}",
            "yes" if r.held else "NO",
        ]
        lines.append("  ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)) + f"  {r.note}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    ran = [r for r in rows if not r.skipped]
    held = [r for r in ran if r.held]
    counted = [r for r in ran if not r.twice_allowed]
    recoveries = [r.recover_s for r in ran if r.recover_s is not None]
    worst = "—" if len(recoveries) < len(ran) or not ran else f"{max(recoveries):.1f}"
    return (
        f"faults: {len(held)} of {len(ran)} held (lost {sum(r.lost for r in ran)}, "
        f"twice {sum(r.twice for r in counted)}, out of order {sum(r.out_of_order for r in ran)}), "
        f"worst recovery {worst} s"
        + (
            f"; twice with Redis data lost (reported apart): {sum(r.twice for r in ran if r.twice_allowed)}"
            if any(r.twice_allowed for r in ran)
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--faults", default="all", help="comma-separated names, or all: " + ", ".join(f.name for f in FAULTS)
    )
    args = parser.parse_args(argv)
    chosen = FAULTS if args.faults == "all" else [f for f in FAULTS if f.name in args.faults.split(",")]
    rows: list[Row] = []
    for fault in chosen:
        for backend in args.backends.split(","):
            print(f"{fault.name} on {backend}: {fault.what}", flush=True)
            directory = Path(tempfile.mkdtemp(prefix=f"wy-fault-{fault.name}-{backend}-"))
            started = time.monotonic()
            try:
                row = run_fault(fault, backend, args.sagas, directory, log=lambda m: print(m, flush=True))
            except Exception as exc:  # a run that could not even measure is a row that did not hold
                row = Row(fault.name, backend, sagas=args.sagas, lost=args.sagas, note=f"run failed: {exc!r}"[:300])
            rows.append(row)
            if row.held or row.skipped:
                shutil.rmtree(directory, ignore_errors=True)
            else:
                print(f"  did not hold: logs and effects kept in {directory}", flush=True)
            print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    print()
    print(table(rows))
    print(summary(rows))
    return 0 if all(r.held for r in rows if not r.skipped) else 1


if __name__ == "__main__":
    sys.exit(main())
