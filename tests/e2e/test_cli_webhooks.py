"""``workyard webhooks rekey``: the one webhook command that opens the database (the others go over
the API: tests/e2e/test_cli.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from config.settings import Settings
from models.work_tables import Webhook
from orchestrator.service.wiring import Wiring
from orchestrator.storage.secret_box import secret_box
from orchestrator.work import webhooks
from tests.conftest import BACKENDS, database_url
from tests.e2e.test_cli import workyard


def webhooks_log(wiring: Wiring) -> list[Any]:
    with wiring.sessions() as session:
        return webhooks.deliveries(session, tenant=None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rekey_moves_every_secret_to_the_first_key(backend: str, tmp_path: Path) -> None:
    old, new, stray = (Fernet.generate_key().decode() for _ in range(3))
    for url in database_url(backend, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
        env |= {"WORKYARD_DATA_DIR": str(tmp_path), "WORKYARD_SECRET_KEY": old}
        if backend != "sqlite":
            env["WORKYARD_DATABASE_URL"] = url
        assert workyard(env, "db", "upgrade").returncode == 0
        before = Settings(data_dir=tmp_path, database_url=url, secret_key=old)
        wiring = Wiring(before)
        try:
            secrets: dict[str, str] = {}
            with wiring.sessions.begin() as session:
                for n in range(5):  # written under the old key
                    hook, secret = webhooks.register(
                        session,
                        tenant="acme",
                        url=f"https://acme.example/hooks/{n}",
                        events=["*"],
                        created_by="user:u",
                        box=secret_box(before),
                        allow_private=False,
                    )
                    secrets[hook.id] = secret
                gone, _ = webhooks.register(
                    session,
                    tenant="acme",
                    url="https://acme.example/gone",
                    events=["*"],
                    created_by="user:u",
                    box=secret_box(before),
                    allow_private=False,
                )
                webhooks.delete(session, gone)  # no secret left: nothing to rekey
                # One written under a key the operator no longer has.
                lost, _ = webhooks.register(
                    session,
                    tenant="beta",
                    url="https://beta.example/hooks",
                    events=["*"],
                    created_by="user:u",
                    box=secret_box(Settings(secret_key=stray)),
                    allow_private=False,
                )
            env["WORKYARD_SECRET_KEY"] = f"{new},{old}"
            refused = workyard(env, "webhooks", "rekey", "--batch-size", "2")
            assert refused.returncode == 1, refused.stderr
            assert f"webhook(s) {lost.id} does not decrypt with any key" in refused.stderr
            progress = [line for line in refused.stdout.splitlines() if line.startswith("rekeyed")]
            assert len(progress) == 3 and progress[-1] == "rekeyed 5 of 6", refused.stdout
            assert "5 secret(s) re-encrypted with the first key, 0 already were, 1 left" in refused.stdout
            assert stored(wiring)[lost.id] == lost.secret_encrypted  # left as it was

            # Its owner gets a new secret (under the new key, as `webhooks rotate-secret` gives one
            # over the API); then rekey finds nothing to do.
            with wiring.sessions.begin() as session:
                found = session.get(Webhook, lost.id)
                assert found is not None
                webhooks.rotate_secret(session, found, secret_box(Settings(secret_key=f"{new},{old}")))
            rekeyed = stored(wiring)
            again = workyard(env, "webhooks", "rekey")
            assert again.returncode == 0, again.stderr
            assert "0 secret(s) re-encrypted with the first key, 6 already were" in again.stdout
            assert "rekeyed 6 of 6" in again.stdout and stored(wiring) == rekeyed  # idempotent

            # With the new key alone, every secret still reads as it was.
            after = secret_box(Settings(secret_key=new))
            assert {i: after.decrypt(rekeyed[i]) for i in secrets} == secrets
            assert workyard(env, "webhooks", "rekey", "--tenant", "acme").returncode != 0  # every tenant's, always
        finally:
            wiring.close()


def stored(wiring: Wiring) -> dict[str, str]:
    with wiring.sessions() as session:
        rows = session.execute(select(Webhook.id, Webhook.secret_encrypted).where(Webhook.secret_encrypted != ""))
        return {row.id: row.secret_encrypted for row in rows}
