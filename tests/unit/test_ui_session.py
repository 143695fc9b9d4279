"""The operator page's session cookie and CSRF tokens (orchestrator.api.ui.session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import Settings
from orchestrator.api.ui.session import SessionKeys, UiSession, new_session, session_keys

SECRET = "x" * 40


def test_a_sealed_session_opens_with_its_secret_only() -> None:
    keys = SessionKeys(SECRET)
    sealed = keys.seal(UiSession(nonce="n1", token="wy_secret"))
    assert "wy_secret" not in sealed
    assert keys.open(sealed, ttl_s=60) == UiSession(nonce="n1", token="wy_secret")
    assert SessionKeys("y" * 40).open(sealed, ttl_s=60) is None
    assert keys.open(sealed[:-4] + "AAAA", ttl_s=60) is None
    assert keys.open(sealed, ttl_s=-1) is None  # older than its time to live
    assert keys.open("garbage", ttl_s=60) is None
    assert keys.open(None, ttl_s=60) is None


def test_a_csrf_token_is_bound_to_its_session() -> None:
    keys = SessionKeys(SECRET)
    one, two = new_session("wy_a"), new_session("wy_a")
    assert one.nonce != two.nonce
    assert keys.csrf_ok(one, keys.csrf(one))
    assert not keys.csrf_ok(one, keys.csrf(two))
    assert not keys.csrf_ok(one, None) and not keys.csrf_ok(one, "")
    assert not keys.csrf_ok(None, keys.csrf(one))
    assert keys.csrf(one) != SessionKeys("y" * 40).csrf(one)


def test_the_secret_defaults_to_the_data_dirs_on_sqlite_only(tmp_path: Path) -> None:
    sqlite = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'w.db'}")
    sealed = session_keys(sqlite).seal(UiSession(nonce="n"))
    assert session_keys(sqlite).open(sealed, ttl_s=60) == UiSession(nonce="n")  # the same secret, kept
    postgres = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db")
    with pytest.raises(RuntimeError, match="WORKYARD_UI_SESSION_SECRET"):
        session_keys(postgres)
    configured = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db", ui_session_secret=SECRET)
    assert session_keys(configured).open(sealed, ttl_s=60) is None


def test_a_short_secret_is_refused_when_the_settings_are_read() -> None:
    with pytest.raises(ValueError, match="ui_session_secret"):
        Settings(ui_session_secret="short")
