"""Secrets stored encrypted (webhook signing secrets): Fernet (AES-128-CBC + HMAC-SHA256) with the
key(s) in ``WORKYARD_SECRET_KEY``, or, on the embedded default, a key generated once into the data
dir (mode 0600, as the admin token is).

A database dump or a logged SQL statement then shows ciphertext only. ``WORKYARD_SECRET_KEY`` may
list several keys, comma-separated: the first encrypts, every one decrypts, so a key is replaced by
putting the new one first, re-encrypting what is stored (``workyard webhooks rekey``), then
dropping the old one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import Settings

KEY_FILE = "secret-key"

_boxes: dict[tuple[str, ...], SecretBox] = {}
_lock = threading.Lock()


class SecretKeyError(RuntimeError):
    """The configured key is not a Fernet key, or a stored secret was encrypted with another key."""


class SecretBox:
    """Encrypts and decrypts short secrets with the configured key(s)."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise SecretKeyError("no secret key: set WORKYARD_SECRET_KEY")
        try:
            fernets = [Fernet(k.encode()) for k in keys]
        except ValueError as exc:
            raise SecretKeyError(
                "WORKYARD_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated; make one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from exc
        self._first = fernets[0]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            # Never say more: the token is ciphertext, but the message may end up in a log.
            raise SecretKeyError("a stored secret does not decrypt with WORKYARD_SECRET_KEY") from exc

    def reencrypt(self, token: str) -> str | None:
        """``token``'s secret encrypted with the first key, or None when ``token`` already is
        (nothing to write); SecretKeyError when no configured key decrypts it."""
        try:
            self._first.decrypt(token.encode())
            return None
        except InvalidToken:
            pass
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored secret does not decrypt with WORKYARD_SECRET_KEY") from exc


def secret_box(settings: Settings) -> SecretBox:
    """The box for ``settings``: its ``secret_key``, else the data dir's key (made on first use)."""
    if settings.secret_key is not None:
        keys = tuple(k.strip() for k in settings.secret_key.get_secret_value().split(",") if k.strip())
    else:
        keys = (data_dir_secret(settings.data_path / KEY_FILE),)
    with _lock:
        box = _boxes.get(keys)
        if box is None:
            box = _boxes[keys] = SecretBox(list(keys))
    return box


def data_dir_secret(path: Path, make: Callable[[], str] = lambda: Fernet.generate_key().decode()) -> str:
    """The secret kept in ``path`` (mode 0600), made by ``make`` and written there on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The API and the orchestrator may both make the key at their first start: write it to a file
    # of our own and link it into place, so exactly one key wins and no one reads a half-written file.
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(make() + "\n")
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass
    finally:
        scratch.unlink(missing_ok=True)
    return path.read_text().strip()
