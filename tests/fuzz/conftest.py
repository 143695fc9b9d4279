"""The whole API in process (ASGI) on SQLite and PostgreSQL, and the identities schemathesis calls it as.

``make test`` runs a bounded fuzz (``WORKYARD_FUZZ_EXAMPLES`` unset: a few derandomized examples per
operation); ``make fuzz`` raises the example count and randomizes them. Both run every check.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from config.settings import Settings
from models.principal import ALL_TENANTS, PrincipalType, Scope
from orchestrator.api.app import create_app
from orchestrator.storage.migrate import upgrade
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS, database_url

BOUNDED_EXAMPLES = 4
# Set (make fuzz): the full run, randomized, more examples.
FULL = bool(os.environ.get("WORKYARD_FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("WORKYARD_FUZZ_EXAMPLES") or BOUNDED_EXAMPLES)

TENANT_SCOPES = [
    Scope.work_read,
    Scope.work_write,
    Scope.work_claim,
    Scope.sagas_read,
    Scope.sagas_write,
    Scope.templates_write,
    Scope.webhooks,
    Scope.agents_read,
    Scope.agents_write,
]


@dataclass(frozen=True)
class Identities:
    """Authorization headers by name: ``admin`` (every tenant, scope admin), ``acme`` and ``beta``."""

    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    for url in database_url(str(request.param), tmp_path):
        app = create_app(Settings(database_url=url, data_dir=tmp_path))
        upgrade(app.state.wiring.engine)
        try:
            yield app
        finally:
            app.state.wiring.close()


@pytest.fixture(scope="module")
def identities(fuzz_app: object) -> Identities:
    sessions = fuzz_app.state.wiring.sessions  # type: ignore[attr-defined]
    made: dict[str, dict[str, str]] = {}
    with sessions.begin() as session:
        for name, tenant, scopes in [
            ("admin", ALL_TENANTS, [Scope.admin]),
            ("acme", "acme", TENANT_SCOPES),
            ("beta", "beta", TENANT_SCOPES),
        ]:
            issued = create_token(
                session,
                principal_type=PrincipalType.user,
                principal_id=f"fuzz-{name}",
                tenant=tenant,
                scopes=[s.value for s in scopes],
            )
            made[name] = {"Authorization": f"Bearer {issued.secret}"}
    return Identities(made)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: object) -> OpenApiSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    # Unknown and repeated query parameters are refused (orchestrator.api.query): sent everywhere.
    # NUL characters are refused in every string (PostgreSQL text cannot hold them); the OpenAPI
    # says so once, in info.description, rather than with a pattern on every string, which
    # schemathesis cannot read: so it is told not to generate them, in every run.
    schema.config.generation.update(allow_extra_parameters=True, allow_x00=False)
    # A body over WORKYARD_MAX_REQUEST_BYTES is refused with 413 (documented on every operation): a
    # rejection as good as a 422 for negative data, which schemathesis does not count by default.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


def operations() -> list[str]:
    """Every operation as "METHOD /path", read from the OpenAPI of an app that is never started."""
    app = create_app(Settings(database_url="sqlite://", data_dir=Path("/nonexistent")))
    methods = {"get", "put", "post", "delete", "patch"}
    return [f"{m.upper()} {path}" for path, item in app.openapi()["paths"].items() for m in item if m in methods]
