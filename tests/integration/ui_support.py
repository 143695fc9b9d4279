"""What the operator page's tests share: an API on a migrated database, tokens, sagas to look at."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from config.settings import Settings
from models.base import utcnow
from models.principal import parse_principal
from models.tables import DeadLetter
from orchestrator.api.app import create_app
from orchestrator.sagas.submit import submit_saga
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.wiring import Wiring
from orchestrator.work.tokens import IssuedToken, create_token, revoke_token
from tests.conftest import migrated_database_url
from tests.support import RedisTarget

ADMIN_TOKEN = "ui-admin-token-for-tests"
SESSION_SECRET = "a-session-secret-for-the-operator-page-tests"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
STATE = re.compile(r'<p class="box"><span class="state s-(\w+)">')


def waiting_template(capability: str) -> dict[str, Any]:
    """A saga that waits on a person first (so it stays running with no worker), then runs a
    handler on ``cap.<capability>``."""
    return {
        "name": f"ui.wait.{capability}",
        "version": "1.0.0",
        "steps": [
            {
                "name": "approve",
                "kind": "work_item",
                "work_item": {
                    "type": "task",
                    "title": "Approve order {input.tag}",
                    "offer": {"type": "human", "scope": "work:claim", "group": "ops"},
                    "payload": {"tag": "{input.tag}"},
                },
            },
            {"name": "ship", "capability": capability, "handler": "ship"},
        ],
    }


def handler_template(capability: str) -> dict[str, Any]:
    """One handler step: its dispatch waits on ``cap.<capability>`` until a worker takes it."""
    return {
        "name": f"ui.run.{capability}",
        "version": "1.0.0",
        "steps": [{"name": "reserve", "capability": capability, "handler": "reserve"}],
    }


@dataclass
class Api:
    """An API app on a migrated database, with the means to set up what its pages show."""

    app: FastAPI
    capability: str = field(default_factory=lambda: f"ui{uuid.uuid4().hex[:8]}")

    @property
    def wiring(self) -> Wiring:
        wiring: Wiring = self.app.state.wiring
        return wiring

    def token(self, principal: str, *, tenant: str, scopes: tuple[str, ...]) -> str:
        return self.issue(principal, tenant=tenant, scopes=scopes).secret

    def issue(self, principal: str, *, tenant: str, scopes: tuple[str, ...]) -> IssuedToken:
        kind, ident = parse_principal(principal)
        with self.wiring.sessions.begin() as session:
            return create_token(session, principal_type=kind, principal_id=ident, tenant=tenant, scopes=scopes)

    def revoke(self, token_id: str) -> None:
        with self.wiring.sessions.begin() as session:
            assert revoke_token(session, token_id)

    def register(self, doc: dict[str, Any]) -> str:
        register_template(self.wiring.sessions, parse_template(doc))
        return str(doc["name"])

    def submit(self, template: str, tenant: str, tag: str | None = None) -> str:
        submitted = submit_saga(
            self.wiring.sessions,
            self.wiring.settings,
            template=template,
            input={"tag": tag or uuid.uuid4().hex[:8]},
            tenant=tenant,
        )
        self.wiring.dispatcher.publish(submitted.outbox)
        return submitted.saga.id

    def dead_letter(self) -> int:
        """A dispatch a worker refused, kept as a dead letter of ``cap.<capability>``: replayable."""
        body = {"saga_id": str(uuid.uuid4()), "step_index": 0, "handler": "reserve", "capability": self.capability}
        row = DeadLetter(
            source=f"cap.{self.capability}",
            reason="no handler 'reserve' here",
            body=json.dumps(body),
            received_at=utcnow(),
        )
        with self.wiring.sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id


def ui_settings(tmp: Path, database_url: str, target: RedisTarget, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "broker_url": target.broker_url,
        "redis_url": target.redis_url,
        "admin_token": ADMIN_TOKEN,
        "ui_session_secret": SESSION_SECRET,
    }
    return Settings(**(values | overrides))


@contextmanager
def ui_api(backend: str, tmp: Path, target: RedisTarget, **overrides: Any) -> Iterator[Api]:
    for url in migrated_database_url(backend, tmp):
        app = create_app(ui_settings(tmp, url, target, **overrides))
        try:
            yield Api(app)
        finally:
            app.state.wiring.close()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[-2000:]
    return found.group(1)


def sign_in(client: httpx.Client | Any, token: str) -> httpx.Response:
    """Sign ``client`` in as the page's form does; the answer to the form's POST."""
    form = client.get("/ui/signin")
    assert form.status_code == 200, form.text
    return client.post("/ui/signin", data={"token": token, "csrf": csrf_of(form.text)}, follow_redirects=False)


def shown_state(html: str) -> str:
    found = STATE.search(html)
    assert found is not None, html[-2000:]
    return found.group(1)
