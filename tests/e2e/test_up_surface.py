"""What `workyard up` exposes: Flower behind basic auth with credentials of its own, an operator
token on PostgreSQL as on SQLite, and a data dir only its owner can read; and the API's 405s
name the methods a resource takes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, database_url
from tests.integration.harness import free_port
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_up_guards_flower_and_prints_an_operator_token_on_either_database(backend: str, tmp_path: Path) -> None:
    for url in database_url(backend, tmp_path):
        _check_up(backend, url, tmp_path / "data")


def _check_up(backend: str, url: str, data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env |= {
        "WORKYARD_DATA_DIR": str(data_dir),
        "WORKYARD_API_PORT": str(free_port()),
        "WORKYARD_FLOWER_PORT": str(free_port()),
    }
    if backend != "sqlite":
        env["WORKYARD_DATABASE_URL"] = url
    up = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    flower = f"http://127.0.0.1:{env['WORKYARD_FLOWER_PORT']}/api/workers"
    try:
        credentials = data_dir / "flower-credentials"
        eventually(lambda: credentials.exists() and (data_dir / "admin-token").exists(), timeout=60, what="up")

        def flower_status(auth: tuple[str, str] | None) -> int | None:
            try:
                return httpx.get(flower, auth=auth, timeout=2).status_code
            except httpx.HTTPError:
                assert up.poll() is None, "workyard up exited"
                return None

        user, _, password = credentials.read_text().strip().partition(":")
        eventually(lambda: flower_status((user, password)) == 200, timeout=60, what="Flower to answer")
        assert flower_status(None) == 401
        assert flower_status((user, "wrong")) == 401
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for secret in (credentials, data_dir / "admin-token"):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        token = (data_dir / "admin-token").read_text().strip()
    finally:
        os.killpg(up.pid, signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert f"admin token {token}" in output
    assert f"password {password}" in output


def test_a_405_names_every_method_the_resource_takes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from config.settings import Settings
    from orchestrator.api.app import create_app
    from orchestrator.storage.migrate import upgrade

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=tmp_path))
    upgrade(app.state.wiring.engine)
    with TestClient(app) as client:
        headers = {"Authorization": "Bearer nobody"}
        # Authentication comes first; a 405 for a caller with a valid token names the methods.
        assert client.delete("/api/v1/sagas", headers=headers).status_code == 401
        token = _admin(app, tmp_path)
        response = client.delete("/api/v1/sagas", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 405 and response.headers["Allow"] == "GET, POST"
        assert response.json()["error"]["code"] == "method_not_allowed"
        response = client.put("/api/v1/work-items/WI-1", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 405 and response.headers["Allow"] == "DELETE, GET, PATCH"


def _admin(app: object, tmp_path: Path) -> str:
    from orchestrator.work.tokens import ensure_admin_token

    wiring = app.state.wiring  # type: ignore[attr-defined]
    with wiring.sessions.begin() as session:
        return ensure_admin_token(session, tmp_path / "admin-token")


def test_the_openapi_document_names_each_operation_and_the_statuses_every_request_may_get(tmp_path: Path) -> None:
    from config.settings import Settings
    from orchestrator.api.app import create_app

    doc = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=tmp_path)).openapi()
    operations = [op for path in doc["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert all(i[0].islower() and "_" not in i for i in ids), ids
    assert "claimWorkItem" in ids and "createSaga" in ids
    for op in operations:
        assert {"400", "401", "413", "422", "503"} <= set(op["responses"]), op["operationId"]
    assert {"200", "202"} <= set(doc["paths"]["/api/v1/sagas"]["post"]["responses"])
    assert {"200", "201"} <= set(doc["paths"]["/api/v1/templates"]["post"]["responses"])
