"""Pooled PostgreSQL connections: one the server ended while idle is replaced before it is used."""

from __future__ import annotations

import select
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from orchestrator.storage.db import make_engine
from tests.conftest import database_url


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.postgres
def test_a_connection_the_server_ended_while_idle_is_replaced_at_checkout(tmp_path: Path) -> None:
    for url in database_url("postgres", tmp_path):
        engine = make_engine(url, pool_size=1, max_overflow=0)
        admin = make_engine(url)
        try:
            first = _backend_pid(engine)
            # A healthy idle connection is reused, not replaced on every checkout.
            assert _backend_pid(engine) == first

            pooled = engine.pool.connect()
            socket_fd = pooled.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
            pooled.close()  # back to the pool, idle
            with admin.begin() as conn:
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
            # Wait until the server's goodbye has reached the idle socket (no timing asserted).
            poller = select.poll()
            poller.register(socket_fd, select.POLLIN)
            deadline = time.monotonic() + 10
            while not poller.poll(50) and time.monotonic() < deadline:
                pass

            # The next unit of work gets a new connection instead of an error.
            second = _backend_pid(engine)
            assert second != first
        finally:
            engine.dispose()
            admin.dispose()
