"""What the benchmarks share: scratch databases, work-item seeding, percentiles, /proc CPU readings.

Each ``bench/*.py`` script is one benchmark and imports what it shares with the others from here.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# The PostgreSQL a benchmark uses when neither --database-url nor WORKYARD_DATABASE_URL names one.
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Priorities of seeded work items, drawn uniformly from this list (so 50 is the most common).
PRIORITIES = (10, 30, 50, 50, 50, 70, 90)


def stop_cleanly_on_sigterm() -> None:
    """A SIGTERM (``timeout``, ``kill``) ends the benchmark as Ctrl-C would: its ``finally``
    blocks run, so the stack, the Redis server and the scratch schema it started go with it
    (by default the signal ends the process at once and leaves them running)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


def loadavg() -> str:
    """The load averages over 1, 5 and 15 minutes, as /proc/loadavg says them ("n/a" elsewhere)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU of a local process so far (Linux /proc), or None if it is not here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# -- scratch databases -------------------------------------------------------------------------


@contextmanager
def scratch_database(base_url: str | None, *, prefix: str, keep: bool) -> Iterator[str]:
    """A URL to an empty database: a fresh schema on PostgreSQL, or (base_url None) a SQLite file."""
    if base_url is None:
        workdir = Path(tempfile.mkdtemp(prefix=f"workyard-{prefix}-"))
        try:
            yield f"sqlite:///{workdir / 'bench.db'}"
        finally:
            if keep:
                log(f"kept {workdir / 'bench.db'}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            if keep:
                log(f"kept schema {schema}")
            else:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


# -- seeding -----------------------------------------------------------------------------------


def open_task_row(
    item_id: str, *, tenant: str, title: str, priority: int, created: datetime, **columns: Any
) -> dict[str, Any]:
    """The ``work_items`` row of an open, unclaimed ``task`` of the ``work`` lifecycle, reported by
    ``user:bench``; ``columns`` add to it (offer, SLA, description). For a Core ``insert(WORK_ITEMS)``."""
    return {
        "id": item_id,
        "code": item_id,
        "tenant": tenant,
        "type": "task",
        "lifecycle": "work",
        "title": title,
        "priority": priority,
        "status": "todo",
        "is_open": True,
        "created_by": "user:bench",
        "reporter_type": "user",
        "reporter_id": "bench",
        "payload": {},
        "metadata": {},
        "lease_epoch": 0,
        "version": 1,
        "created_at": created,
        "updated_at": created,
        **columns,
    }
