"""The database going away mid-service: a 503 that says to retry, not a 500 or a traceback."""

from __future__ import annotations

from fastapi.testclient import TestClient

from orchestrator.storage.db import make_engine, make_session_factory
from tests.integration.harness import free_port
from tests.integration.workitems.conftest import TokenFactory, error


def test_a_database_outage_answers_503_with_retry_after(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=["sagas:read"], tenant="*")
    assert client.get("/api/v1/sagas", headers=ops).status_code == 200  # the token is cached now
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    # The database goes away: from here on every connection is refused.
    down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    wiring.__dict__["sessions"] = make_session_factory(down)
    try:
        # In a route (the token was known), and while looking a token up (before any route).
        for headers in (ops, {"Authorization": "Bearer wy_not_seen_before"}):
            response = client.get("/api/v1/sagas", headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert error(response)["code"] == "unavailable"
    finally:
        down.dispose()
