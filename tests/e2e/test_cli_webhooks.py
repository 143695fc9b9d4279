"""``workyard webhooks``: the delivery log, and an operator's hands on the webhooks themselves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from config.settings import Settings
from models.base import utcnow
from models.work_tables import Webhook
from orchestrator.service.wiring import Wiring
from orchestrator.storage.secret_box import secret_box
from orchestrator.work import webhooks
from tests.conftest import BACKENDS, database_url
from tests.e2e.test_cli import workyard


def test_list_disable_enable_rotate_redeliver_delete(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env["WORKYARD_DATA_DIR"] = str(tmp_path)
    assert workyard(env, "db", "upgrade").returncode == 0
    assert "no webhook deliveries" in workyard(env, "webhooks").stdout
    settings = Settings(data_dir=tmp_path)
    wiring = Wiring(settings)
    try:
        with wiring.sessions.begin() as session:
            hook, first = webhooks.register(
                session,
                tenant="acme",
                url="https://acme.example/hooks",
                events=["*"],
                created_by="user:u",
                box=secret_box(settings),
                allow_private=False,
            )
            webhooks.emit(session, "acme", "sla.warning", {"item": {"id": "x"}}, utcnow())
        [(delivery, _url)] = webhooks_log(wiring)

        shown = workyard(env, "webhooks", "--limit", "5")
        assert shown.returncode == 0 and "sla.warning" in shown.stdout and "pending" in shown.stdout
        assert f"{hook.id}  tenant=acme  enabled" in workyard(env, "webhooks", "list").stdout
        other = workyard(env, "webhooks", "--tenant", "beta", "disable", hook.id)
        assert other.returncode == 1 and f"no webhook {hook.id!r}" in other.stderr
        assert workyard(env, "webhooks", "--tenant", "acme", "disable", hook.id).returncode == 0
        assert "disabled" in workyard(env, "webhooks", "list").stdout
        assert workyard(env, "webhooks", "enable", hook.id).returncode == 0
        assert "enabled" in workyard(env, "webhooks", "list").stdout

        rotated = workyard(env, "webhooks", "rotate-secret", hook.id)
        second = rotated.stdout.strip()
        assert rotated.returncode == 0 and second.startswith("whsec_") and second != first
        assert "not shown again" in rotated.stderr
        with wiring.sessions() as session:
            stored = session.scalars(select(Webhook.secret_encrypted)).one()
        assert secret_box(settings).decrypt(stored) == second

        assert workyard(env, "webhooks", "redeliver", str(delivery.id)).returncode == 0
        missing = workyard(env, "webhooks", "redeliver", "999999")
        assert missing.returncode == 1 and "no webhook delivery 999999" in missing.stderr
        assert workyard(env, "webhooks", "delete", hook.id).returncode == 0
        assert "no webhooks" in workyard(env, "webhooks", "list").stdout
        assert workyard(env, "webhooks", "delete", hook.id).returncode == 1
    finally:
        wiring.close()


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

            # Its owner gets a new secret (under the new key); then rekey finds nothing to do.
            assert workyard(env, "webhooks", "rotate-secret", lost.id).returncode == 0
            rekeyed = stored(wiring)
            again = workyard(env, "webhooks", "rekey")
            assert again.returncode == 0, again.stderr
            assert "0 secret(s) re-encrypted with the first key, 6 already were" in again.stdout
            assert "rekeyed 6 of 6" in again.stdout and stored(wiring) == rekeyed  # idempotent

            # With the new key alone, every secret still reads as it was.
            after = secret_box(Settings(secret_key=new))
            assert {i: after.decrypt(rekeyed[i]) for i in secrets} == secrets
            assert workyard(env, "webhooks", "--tenant", "acme", "rekey").returncode == 1
        finally:
            wiring.close()


def stored(wiring: Wiring) -> dict[str, str]:
    with wiring.sessions() as session:
        rows = session.execute(select(Webhook.id, Webhook.secret_encrypted).where(Webhook.secret_encrypted != ""))
        return {row.id: row.secret_encrypted for row in rows}
