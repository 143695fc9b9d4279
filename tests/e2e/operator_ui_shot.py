"""The README's picture of ``/ui``: a stack of its own (SQLite, a Redis it starts, an orchestrator
and two workers), a few sagas left in different states, and a screenshot of the sagas page in
Debian's Chromium.

    python -m tests.e2e.operator_ui_shot docs/operator-ui.png
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from functools import partial
from pathlib import Path

from models.enums import SagaControl
from models.principal import ALL_TENANTS
from orchestrator.api.app import create_app
from orchestrator.local.embedded import start_redis
from orchestrator.sagas.controls import control_saga
from tests.conftest import database_url
from tests.integration.harness import Harness, serving, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.integration.test_ui_browser import CHROMIUM_FLAGS, ORDER, chromium_path, signed_in
from tests.integration.ui_support import ADMIN_TOKEN, SESSION_SECRET
from tests.support import eventually, redis_target_from_socket


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="wy-shot-") as raw:
        tmp = Path(raw)
        redis = start_redis(tmp / "redis", tmp / "redis.sock")
        try:
            target = redis_target_from_socket(tmp / "redis.sock")
            for url in database_url("sqlite", tmp):
                settings = stack_settings(tmp, url, target, admin_token=ADMIN_TOKEN, ui_session_secret=SESSION_SECRET)
                harness = Harness(settings, target)
                try:
                    harness.start()
                    for doc in ({**THREE_STEPS, "name": "shop.fulfil"}, {**ORDER, "name": "shop.approval"}):
                        harness.register(doc, tenant=ALL_TENANTS)
                    _sagas(harness)
                    app = create_app(settings)
                    with serving(app) as base, sync_playwright() as playwright:
                        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
                        page = signed_in(browser, base, ADMIN_TOKEN)
                        page.set_viewport_size({"width": 1440, "height": 600})
                        page.screenshot(path=str(out))
                        browser.close()
                    app.state.wiring.close()
                finally:
                    harness.stop()
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    print(f"wrote {out}")


def _sagas(harness: Harness) -> None:
    """Completed, compensated, waiting on a person, paused, and cancelled sagas, for two tenants."""

    def tag() -> str:
        return uuid.uuid4().hex[:6]

    done = [harness.submit("shop.fulfil", {"tag": tag()}, tenant=t) for t in ("acme", "globex", "acme")]
    failing = {"tag": tag(), "behaviour": {"three": {"fail_always": True, "retryable": False}}}
    compensated = harness.submit("shop.fulfil", failing, tenant="acme")
    for saga_id in [*done, compensated]:
        harness.wait_final(saga_id)
    waiting = [harness.submit("shop.approval", {"tag": tag()}, tenant=t) for t in ("acme", "globex", "acme")]

    def approving(saga_id: str) -> bool:
        return harness.saga(saga_id).steps[1].state == "running"

    for saga_id in waiting:
        eventually(partial(approving, saga_id), timeout=60, what=f"saga {saga_id} to wait on its approval")
    sessions, settings = harness.wiring.sessions, harness.settings
    control_saga(sessions, settings, waiting[0], SagaControl.pause, actor="user:ops", reason="a look")
    cancelled = control_saga(sessions, settings, waiting[1], SagaControl.cancel, actor="user:ops", reason="called off")
    harness.wiring.dispatcher.publish(cancelled.outbox)
    harness.wait_final(waiting[1])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/operator-ui.png"))
