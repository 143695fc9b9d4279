"""A work-item API on a real database (SQLite and PostgreSQL), and tokens to call it with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from config.settings import Settings
from models.base import Base
from models.principal import parse_principal
from orchestrator.api.app import create_app
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS, migrated_database_url

Headers = dict[str, str]
TokenFactory = Callable[..., Headers]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(backend: str, tmp_path: Path) -> Iterator[TestClient]:
    for url in migrated_database_url(backend, tmp_path):
        app = create_app(Settings(database_url=url, data_dir=tmp_path, work_lease_ttl_s=30))
        with TestClient(app) as test_client:
            yield test_client


@pytest.fixture
def token(client: TestClient) -> TokenFactory:
    """``token("agent:a1", scopes=[...], tenant="acme", groups=[...], capabilities=[...])`` -> headers."""

    def make(
        principal: str,
        *,
        scopes: list[str] | tuple[str, ...] = ("work:read", "work:write", "work:claim"),
        tenant: str = "acme",
        groups: list[str] | tuple[str, ...] = (),
        capabilities: list[str] | tuple[str, ...] = (),
    ) -> Headers:
        kind, ident = parse_principal(principal)
        with sessions(client).begin() as session:
            issued = create_token(
                session,
                principal_type=kind,
                principal_id=ident,
                tenant=tenant,
                scopes=scopes,
                groups=groups,
                capabilities=capabilities,
            )
        return {"Authorization": f"Bearer {issued.secret}"}

    return make


def sessions(client: TestClient) -> Any:
    return client.app.state.wiring.sessions  # type: ignore[attr-defined]


def counts(client: TestClient) -> dict[str, int]:
    with sessions(client)() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return dict(body["error"])


def task(title: str = "write the summary", **extra: Any) -> dict[str, Any]:
    return {"type": "task", "title": title, "description": "do it well", **extra}
