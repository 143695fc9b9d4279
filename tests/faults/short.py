"""The short fault matrix ``make test`` runs: a few faults, fewer sagas, the same measures and the
same bar as ``make faults`` (tests/faults/matrix.py)."""

from __future__ import annotations

from pathlib import Path

from tests.faults.matrix import FAULTS, Row, run_fault, table
from tests.faults.servers import PostgresServer
from tests.support import need

SAGAS = 40
SHORT = ["worker", "orchestrator", "worker-paused", "duplicates"]


def run_short(name: str, backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and (why := PostgresServer.available()):
        need("a PostgreSQL cluster of the test's own", why)
    fault = next(f for f in FAULTS if f.name == name)
    row: Row = run_fault(fault, backend, SAGAS, tmp_path, log=lambda _: None)
    assert row.skipped is None, row.skipped
    assert row.held, "\n" + table([row])
