"""0012 encrypts the webhook secrets that earlier versions stored in plain text, on SQLite and
PostgreSQL, with the key of the settings it runs with."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import text

from config.settings import Settings, get_settings
from orchestrator.storage.db import make_engine
from orchestrator.storage.migrate import alembic_config, upgrade
from orchestrator.storage.secret_box import secret_box
from tests.conftest import BACKENDS, database_url

PLAIN = "whsec_plain-text-from-before-0012"


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The operator's key, as ``workyard db upgrade`` reads it (from the environment)."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("WORKYARD_SECRET_KEY", key)
    get_settings.cache_clear()
    yield key
    get_settings.cache_clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_text_webhook_secrets_become_encrypted(backend: str, tmp_path: Path, secret_key: str) -> None:
    for url in database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            upgrade(engine, "0011")
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO webhooks (id, tenant, url, secret, events, created_by, created_at) "
                        "VALUES ('h1', 'acme', 'https://acme.example/hooks', :secret, '[\"*\"]', 'user:u', :now)"
                    ),
                    {"secret": PLAIN, "now": datetime(2030, 1, 2, tzinfo=UTC)},
                )
            upgrade(engine)
            with engine.connect() as conn:
                row = conn.execute(text("SELECT * FROM webhooks")).mappings().one()
            assert "secret" not in row and row["deleted_at"] is None
            assert PLAIN not in str(dict(row))
            box = secret_box(Settings(secret_key=secret_key, data_dir=tmp_path))
            assert box.decrypt(row["secret_encrypted"]) == PLAIN
            # And back: a downgrade puts the plain text where 0011 expects it.
            cfg = alembic_config(engine.url.render_as_string(hide_password=False))
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0011")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT secret FROM webhooks")).scalar_one() == PLAIN
        finally:
            engine.dispose()
