"""The operator page's session: a cookie that carries the operator's token, and CSRF tokens bound to it.

The cookie is sealed with Fernet (AES-CBC + HMAC, with a timestamp) under a key derived from
``WORKYARD_UI_SESSION_SECRET``: it can be neither read nor forged, and one older than
``WORKYARD_UI_SESSION_TTL_S`` is refused. It holds the token itself, checked again at every
request as the API checks bearer tokens, so a revoked token ends its sessions at once (within the
API's few seconds of caching). Every session, signed in or not, has a random nonce; a form's CSRF
token is an HMAC of that nonce, so a token from another session (or none) is refused.

On SQLite (one host) the secret defaults to one generated into the data dir; on PostgreSQL, where
several API processes may serve one address, it must be set (they must all share it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

from config.settings import Settings
from orchestrator.storage.secret_box import data_dir_secret

COOKIE = "workyard_ui"
SECRET_FILE = "ui-session-secret"
CSRF_FIELD = "csrf"


class NoSessionSecret(RuntimeError):
    """The database is not SQLite and WORKYARD_UI_SESSION_SECRET is not set."""


@dataclass(frozen=True)
class UiSession:
    """What the cookie holds: the session's nonce, and the operator's token once signed in."""

    nonce: str
    token: str | None = None


class SessionKeys:
    """The cookie's sealing key and the CSRF key, both derived from one secret."""

    def __init__(self, secret: str):
        seal_key = hashlib.sha256(b"workyard ui cookie\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(seal_key))
        self._csrf_key = hashlib.sha256(b"workyard ui csrf\0" + secret.encode()).digest()

    def seal(self, session: UiSession) -> str:
        return self._fernet.encrypt(json.dumps({"n": session.nonce, "t": session.token}).encode()).decode()

    def open(self, sealed: str | None, ttl_s: int) -> UiSession | None:
        """The session a cookie holds; None if it is missing, forged, from another secret or too old."""
        if not sealed:
            return None
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode(), ttl=ttl_s))
        except (InvalidToken, ValueError):
            return None
        nonce, token = data.get("n"), data.get("t")
        if not isinstance(nonce, str) or not (token is None or isinstance(token, str)):
            return None
        return UiSession(nonce=nonce, token=token)

    def csrf(self, session: UiSession) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: UiSession | None, sent: str | None) -> bool:
        return session is not None and bool(sent) and hmac.compare_digest(self.csrf(session), str(sent))


def new_session(token: str | None = None) -> UiSession:
    """A session with a fresh nonce: at every sign-in and sign-out, so no CSRF token outlives either."""
    return UiSession(nonce=secrets.token_urlsafe(24), token=token)


def session_keys(settings: Settings) -> SessionKeys:
    """The keys for ``settings``: its secret, else (SQLite only) the data dir's; NoSessionSecret otherwise."""
    if settings.ui_session_secret is not None:
        return _keys(settings.ui_session_secret.get_secret_value())
    if not settings.effective_database_url().startswith("sqlite"):
        raise NoSessionSecret(
            "the operator page needs WORKYARD_UI_SESSION_SECRET (32 characters or more, the same for every API "
            "process) when the database is not SQLite"
        )
    return _keys(data_dir_secret(settings.data_path / SECRET_FILE, lambda: secrets.token_urlsafe(48)))


@lru_cache(maxsize=8)
def _keys(secret: str) -> SessionKeys:
    return SessionKeys(secret)
