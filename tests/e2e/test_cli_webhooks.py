"""``workyard webhooks``: the delivery log, and an operator's hands on the webhooks themselves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select

from config.settings import Settings
from models.base import utcnow
from models.work_tables import Webhook
from orchestrator.service.wiring import Wiring
from orchestrator.storage.secret_box import secret_box
from orchestrator.work import webhooks
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
