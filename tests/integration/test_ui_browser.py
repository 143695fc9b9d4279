"""The operator page in a real headless Chromium (Debian's ``chromium``, driven by Playwright), on
SQLite and PostgreSQL, against a real stack: an orchestrator and a Celery worker as processes, and
the API served by uvicorn. Each page loads, sign-in works and a wrong token is refused, a POST
without the CSRF token is a 403, the controls work (pause, resume, and a cancel whose undo runs on
the worker), a dead letter is replayed, and a tenant cannot see another tenant's saga.

A screenshot of each page is kept under ``tests/artifacts/ui/<backend>/``. Without Chromium (or
Playwright) these tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from models.principal import ALL_TENANTS
from orchestrator.api.app import create_app
from orchestrator.local.stack import WorkerSpec
from tests.conftest import database_url
from tests.integration.harness import HANDLERS, Harness, serving, stack_settings
from tests.integration.templates import FAST_RETRY
from tests.integration.ui_support import ADMIN_TOKEN, SESSION_SECRET, Api, shown_state
from tests.support import ROOT, RedisTarget, eventually, need

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
# Flags that work on these machines: no sandbox (root), no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TENANT = "acme"

# A first step on the worker, under a mutex scope (it leaves a fencing token), with an undo; then
# a person's approval, which keeps the saga running for as long as a test needs.
ORDER: dict[str, Any] = {
    "name": "ui.order",
    "version": "1.0.0",
    "input_schema": {"type": "object", "required": ["tag"], "properties": {"tag": {"type": "string"}}},
    "steps": [
        {
            "name": "one",
            "capability": "alpha",
            "handler": "one",
            "compensate": "undo_one",
            "mutex_scope": "order:{input.tag}",
            "retry": FAST_RETRY,
        },
        {
            "name": "approve",
            "kind": "work_item",
            "work_item": {
                "type": "task",
                "title": "Approve order {input.tag}",
                "offer": {"type": "human", "scope": "work:claim", "group": "approvers"},
                "payload": {"tag": "{input.tag}"},
            },
        },
    ],
}


def chromium_path() -> str:
    path = os.environ.get("WORKYARD_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        need("Chromium", "install Debian's chromium package (apt-get install -y chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("Playwright", "pip install playwright (the dev extra)")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def stack(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """An orchestrator and one worker (alpha) as processes, with ORDER registered."""
    tmp = tmp_path_factory.mktemp(f"ui-browser-{backend}")
    for url in database_url(backend, tmp):
        settings = stack_settings(tmp, url, redis_target, admin_token=ADMIN_TOKEN, ui_session_secret=SESSION_SECRET)
        harness = Harness(settings, redis_target, workers=[WorkerSpec(["alpha"], HANDLERS, concurrency=1)])
        try:
            harness.start()
            harness.register(ORDER, tenant=ALL_TENANTS)  # a shared template: acme's and globex's sagas run it
            yield harness
        finally:
            harness.stop()


@pytest.fixture(scope="module")
def site(stack: Harness) -> Iterator[tuple[str, Api]]:
    """The API, served by uvicorn on its own wiring to the stack's database and Redis."""
    app = create_app(stack.settings)
    with serving(app) as base:
        yield base, Api(app, capability=f"ui{uuid.uuid4().hex[:8]}")
    app.state.wiring.close()


def shot(page: Page, backend: str, name: str) -> None:
    directory = ARTIFACTS / backend
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def signed_in(browser: Browser, base: str, token: str) -> Page:
    page = browser.new_context(base_url=base).new_page()
    page.goto("/ui")
    assert page.url.endswith("/ui/signin")
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("button:text-is('Sign in')")
    assert page.url.endswith("/ui/sagas"), page.url
    return page


def waiting_for_approval(stack: Harness) -> str:
    """A saga whose first step ran on the worker and which now waits on a person."""
    saga_id = stack.submit("ui.order", {"tag": f"o-{uuid.uuid4().hex[:6]}"}, tenant=TENANT)
    eventually(
        lambda: [s.state for s in stack.saga(saga_id).steps][:2] == ["succeeded", "running"],
        timeout=60,
        what=f"saga {saga_id} to wait on its approval",
    )
    return saga_id


def test_sign_in_refuses_a_wrong_token_and_every_page_loads(
    browser: Browser, site: tuple[str, Api], stack: Harness, backend: str
) -> None:
    base, _ = site
    saga_id = waiting_for_approval(stack)
    page = browser.new_context(base_url=base).new_page()
    page.goto("/ui/sagas")
    assert page.url.endswith("/ui/signin")
    page.fill("input[name=token]", "wy_not-a-real-token")
    with page.expect_navigation():
        page.click("button:text-is('Sign in')")
    assert "That token is unknown or revoked." in page.inner_text("main")
    shot(page, backend, "signin-refused")
    page = signed_in(browser, base, ADMIN_TOKEN)
    assert saga_id in page.inner_text("main")
    shot(page, backend, "sagas")
    for chosen, listed in (("completed", False), ("running", True), ("", True)):
        page.select_option("select[name=state]", chosen)
        with page.expect_navigation():
            page.click("button:text-is('Filter')")
        assert (saga_id in page.inner_text("main")) is listed, (chosen, page.url)
    with page.expect_navigation():
        page.click(f"text={saga_id}")
    assert page.inner_text("h1") == f"Saga {saga_id}"
    assert "Approve order" in page.inner_text("main")
    shot(page, backend, "saga")
    with page.expect_navigation():
        page.locator("tr", has_text="Approve order").locator("a").first.click()
    assert page.inner_text("h1").startswith("Work item ")
    assert "History" in page.inner_text("main")
    shot(page, backend, "item")
    for path, title, name in [
        ("/ui/items", "Work items", "items"),
        ("/ui/queues", "Queues", "queues"),
        ("/ui/dead-letters", "Dead letters", "dead-letters"),
        ("/ui/mutexes", "Mutex scopes", "mutexes"),
    ]:
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        assert page.inner_text("h1") == title
        shot(page, backend, name)
    page.goto("/ui/queues")
    assert "cap.alpha" in page.inner_text("main")
    page.goto("/ui/mutexes")
    assert "order:" in page.inner_text("main")  # the first step's scope, with its fencing token


def test_pause_resume_and_cancel_with_its_undo_on_the_worker(
    browser: Browser, site: tuple[str, Api], stack: Harness, backend: str
) -> None:
    base, _ = site
    saga_id = waiting_for_approval(stack)
    page = signed_in(browser, base, ADMIN_TOKEN)
    page.goto(f"/ui/sagas/{saga_id}")

    def control(button: str, reason: str) -> None:
        form = page.locator("form", has=page.locator(f"button:text-is('{button}')"))
        form.locator("input[name=reason]").fill(reason)
        with page.expect_navigation():
            form.locator("button").click()

    control("Pause", "checking the stock")
    assert "pause: done" in page.inner_text("main")
    assert "paused since" in page.inner_text("p.box")
    shot(page, backend, "saga-paused")
    control("Resume", "stock is fine")
    assert "resume: done" in page.inner_text("main")
    control("Cancel (undo what it did)", "customer called")
    # The undo of step one runs on the worker; the saga ends cancelled once it has.
    eventually(
        lambda: page.reload() and shown_state(page.content()) == "cancelled",
        timeout=60,
        interval=0.5,
        what=f"saga {saga_id} to be cancelled and undone",
    )
    timeline = page.inner_text("main")
    assert "compensate" in timeline and "customer called" in timeline
    ran = [(a.step_name, a.phase.value, a.outcome.value) for a in stack.saga(saga_id).attempts]
    assert ("one", "forward", "succeeded") in ran and ("one", "compensate", "succeeded") in ran, ran
    shot(page, backend, "saga-cancelled")


def test_a_post_without_its_csrf_token_is_refused(browser: Browser, site: tuple[str, Api], stack: Harness) -> None:
    base, _ = site
    saga_id = waiting_for_approval(stack)
    page = signed_in(browser, base, ADMIN_TOKEN)
    page.goto(f"/ui/sagas/{saga_id}")
    # The form as a forger would send it: the browser's own cookie, no CSRF token.
    answer = page.request.post(f"{base}/ui/sagas/{saga_id}/cancel", form={"reason": "forged"})
    assert answer.status == 403
    assert "CSRF" in answer.text()
    page.reload()
    assert shown_state(page.content()) == "running"


def test_a_dead_letter_is_replayed_from_its_page(
    browser: Browser, site: tuple[str, Api], stack: Harness, backend: str
) -> None:
    base, api = site
    letter = api.dead_letter()
    page = signed_in(browser, base, ADMIN_TOKEN)
    page.goto("/ui/dead-letters")
    shot(page, backend, "dead-letters-before")
    row = page.locator("tr", has=page.locator(f"td:text-is('{letter}')"))
    with page.expect_navigation():
        row.locator("button:text-is('Replay')").click()
    assert f"dead letter {letter} replayed" in page.inner_text("main")
    assert page.locator(f"td:text-is('{letter}')").count() == 0
    shot(page, backend, "dead-letters-replayed")


def test_a_tenant_cannot_see_another_tenants_saga(
    browser: Browser, site: tuple[str, Api], stack: Harness, backend: str
) -> None:
    base, api = site
    ours = waiting_for_approval(stack)
    theirs = stack.submit("ui.order", {"tag": f"g-{uuid.uuid4().hex[:6]}"}, tenant="globex")
    token = api.token("user:ann", tenant=TENANT, scopes=("sagas:read", "sagas:control", "work:read"))
    page = signed_in(browser, base, token)
    listing = page.inner_text("main")
    assert ours in listing and theirs not in listing
    answer = page.goto(f"/ui/sagas/{theirs}")
    assert answer is not None and answer.status == 404
    assert f"no saga with id '{theirs}'" in page.inner_text("main")
    shot(page, backend, "other-tenant-404")
    answer = page.goto("/ui/queues")
    assert answer is not None and answer.status == 403


def test_screenshots_were_kept(browser: Browser, backend: str) -> None:
    kept = {p.stem for p in Path(ARTIFACTS / backend).glob("*.png")}
    assert {"sagas", "saga", "item", "items", "queues", "dead-letters", "mutexes", "saga-cancelled"} <= kept
