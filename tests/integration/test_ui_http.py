"""The operator page over plain HTTP, on SQLite and PostgreSQL: sign-in, the session cookie, CSRF,
tenants and scopes, the controls, and errors shown as pages."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import keys
from orchestrator.api.auth import CACHE_TTL_S
from orchestrator.api.ui.session import SECRET_FILE
from tests.integration.ui_support import (
    ADMIN_TOKEN,
    Api,
    csrf_of,
    handler_template,
    shown_state,
    sign_in,
    ui_api,
    waiting_template,
)
from tests.support import RedisTarget, eventually

OPERATOR_SCOPES = ("sagas:read", "sagas:control", "work:read")


@pytest.fixture(scope="module")
def api(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with ui_api(backend, tmp_path_factory.mktemp(f"ui-http-{backend}"), redis_target) as built:
        built.register(waiting_template(built.capability))
        built.register(handler_template(built.capability))
        yield built


@pytest.fixture
def client(api: Api) -> Iterator[TestClient]:
    with TestClient(api.app) as fresh:
        yield fresh


def admin(client: TestClient) -> TestClient:
    assert sign_in(client, ADMIN_TOKEN).status_code == 303
    return client


def post(client: TestClient, path: str, **form: Any) -> Any:
    """POST a form with the session's CSRF token (as every page of the session carries it)."""
    return client.post(path, data={"csrf": csrf_of(client.get("/ui/sagas").text), **form})


def test_pages_need_a_session_and_sign_in_takes_a_valid_token_only(client: TestClient) -> None:
    for path in ("/ui", "/ui/sagas", "/ui/queues", "/ui/items", "/ui/dead-letters", "/ui/mutexes"):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/signin"), path
    refused = sign_in(client, "not-a-token")
    assert refused.status_code == 401
    assert "That token is unknown or revoked." in refused.text
    assert client.get("/ui/sagas", follow_redirects=False).status_code == 303
    signed = sign_in(client, ADMIN_TOKEN)
    assert (signed.status_code, signed.headers["location"]) == (303, "/ui/sagas")
    page = client.get("/ui/sagas")
    assert page.status_code == 200
    assert "user:admin · tenant *" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(api: Api) -> None:
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(api.app, base_url=base) as client:
            cookie = sign_in(client, ADMIN_TOKEN).headers["set-cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            assert "Path=/ui" in cookie
            assert ("Secure" in cookie) is secure
            assert ADMIN_TOKEN not in cookie  # sealed, not merely signed


def test_a_post_without_the_sessions_csrf_token_is_a_403_and_does_nothing(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    # Sign-in itself: no token, or one of another session.
    assert client.post("/ui/signin", data={"token": ADMIN_TOKEN}).status_code == 403
    with TestClient(api.app) as other:
        foreign = csrf_of(other.get("/ui/signin").text)
    assert client.post("/ui/signin", data={"token": ADMIN_TOKEN, "csrf": foreign}).status_code == 403
    admin(client)
    for form in ({"reason": "no token"}, {"reason": "foreign", "csrf": foreign}, {"reason": "empty", "csrf": ""}):
        answer = client.post(f"/ui/sagas/{saga_id}/cancel", data=form)
        assert answer.status_code == 403, form
        assert "CSRF" in answer.text
        assert "text/html" in answer.headers["content-type"]
    assert client.post("/ui/signout", data={}).status_code == 403
    assert shown_state(client.get(f"/ui/sagas/{saga_id}").text) == "running"


def test_the_csrf_token_of_the_anonymous_session_does_not_work_once_signed_in(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    before = csrf_of(client.get("/ui/signin").text)
    assert (
        client.post("/ui/signin", data={"token": ADMIN_TOKEN, "csrf": before}, follow_redirects=False).status_code
        == 303
    )
    assert client.post(f"/ui/sagas/{saga_id}/pause", data={"reason": "x", "csrf": before}).status_code == 403


def test_pause_resume_and_cancel_from_the_saga_page(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    admin(client)
    page = client.get(f"/ui/sagas/{saga_id}").text
    assert "Approve order" in page  # the work item it waits on
    for control in ("Cancel (undo what it did)", "Terminate (undo nothing)", "Pause"):
        assert control in page
    paused = post(client, f"/ui/sagas/{saga_id}/pause", reason="checking the stock")
    assert paused.status_code == 200
    assert "pause: done" in paused.text and "paused since" in paused.text
    assert "checking the stock" in paused.text  # the audit trail
    again = post(client, f"/ui/sagas/{saga_id}/pause", reason="twice")
    assert again.status_code == 409
    assert "is paused already" in again.text
    resumed = post(client, f"/ui/sagas/{saga_id}/resume", reason="stock is fine")
    assert "resume: done" in resumed.text and "paused since" not in resumed.text
    cancelled = post(client, f"/ui/sagas/{saga_id}/cancel", reason="customer called")
    assert cancelled.status_code == 200
    assert shown_state(cancelled.text) == "cancelled"
    assert "Rerun" in cancelled.text  # a cancelled saga may be rerun


def test_rerun_shows_its_plan_on_a_dry_run_and_refuses_a_patch_that_is_not_json(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    admin(client)
    post(client, f"/ui/sagas/{saga_id}/cancel", reason="to rerun it")
    plan = post(client, f"/ui/sagas/{saga_id}/rerun", reason="try again", input_patch='{"tag": "B-2"}', dry_run="1")
    assert plan.status_code == 200
    assert "Rerun plan from approve (dry run: nothing was done)" in plan.text
    assert "B-2" in plan.text
    assert shown_state(plan.text) == "cancelled"
    bad = post(client, f"/ui/sagas/{saga_id}/rerun", reason="try again", input_patch="{not json")
    assert bad.status_code == 422 and "input_patch is not JSON" in bad.text
    for patch, said in [('{"tag": NaN}', "NaN"), ('{"tag": "a\\u0000b"}', "NUL"), ('["tag"]', "JSON object")]:
        refused = post(client, f"/ui/sagas/{saga_id}/rerun", reason="try again", input_patch=patch)
        assert refused.status_code == 422 and said in refused.text, (patch, refused.text[-300:])
    unknown = post(client, f"/ui/sagas/{saga_id}/rerun", reason="try again", from_step="no-such-step", dry_run="1")
    assert 400 <= unknown.status_code < 500 and "no-such-step" in unknown.text
    started = post(client, f"/ui/sagas/{saga_id}/rerun", reason="for real", input_patch='{"tag": "B-3"}')
    assert "rerun: started" in started.text
    assert shown_state(started.text) == "running"


def test_a_tenant_sees_only_its_own_sagas_and_cannot_name_another(api: Api, client: TestClient) -> None:
    ours = api.submit(f"ui.wait.{api.capability}", "acme")
    theirs = api.submit(f"ui.wait.{api.capability}", "globex")
    assert sign_in(client, api.token("user:ann", tenant="acme", scopes=OPERATOR_SCOPES)).status_code == 303
    listing = client.get("/ui/sagas").text
    assert ours in listing and theirs not in listing
    assert 'name="tenant"' not in listing  # no tenant filter for a tenant's token
    hidden = client.get(f"/ui/sagas/{theirs}")
    assert hidden.status_code == 404 and theirs in hidden.text
    assert post(client, f"/ui/sagas/{theirs}/cancel", reason="not mine").status_code == 404
    assert client.get("/ui/sagas", params={"tenant": "globex"}).status_code == 403
    items = client.get("/ui/items").text
    assert "acme" in items and "globex" not in items
    for path in ("/ui/queues", "/ui/dead-letters", "/ui/mutexes"):
        assert client.get(path).status_code == 403, path


def test_an_operator_filters_by_tenant_state_template_and_time(api: Api, client: TestClient) -> None:
    ours = api.submit(f"ui.wait.{api.capability}", "acme")
    theirs = api.submit(f"ui.wait.{api.capability}", "globex")
    admin(client)
    by_tenant = client.get("/ui/sagas", params={"tenant": "globex", "template": f"ui.wait.{api.capability}"}).text
    assert theirs in by_tenant and ours not in by_tenant
    assert ours in client.get("/ui/sagas", params={"state": "running", "since": "2000-01-01T00:00"}).text
    # The filter form as a browser sends it with nothing chosen.
    assert ours in client.get("/ui/sagas", params={"state": "", "template": "", "since": "", "until": ""}).text
    assert ours not in client.get("/ui/sagas", params={"until": "2000-01-01T00:00"}).text
    assert ours not in client.get("/ui/sagas", params={"state": "completed"}).text
    paged = client.get("/ui/sagas", params={"limit": 1}).text
    assert "Next page" in paged


def test_a_token_without_sagas_control_sees_no_controls_and_cannot_post_them(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    assert sign_in(client, api.token("user:viewer", tenant="acme", scopes=("sagas:read",))).status_code == 303
    page = client.get(f"/ui/sagas/{saga_id}").text
    assert "lacks the sagas:control scope" in page and "Pause" not in page
    refused = post(client, f"/ui/sagas/{saga_id}/pause", reason="may I")
    assert refused.status_code == 403 and "sagas:control" in refused.text
    assert client.get("/ui/items").status_code == 403  # no work:read either


def test_bad_input_is_a_page_with_the_message_never_a_500(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme")
    admin(client)
    cases = [
        (client.get("/ui/sagas", params={"state": "bogus"}), 422, "is not a saga state"),
        (client.get("/ui/sagas", params={"since": "yesterday"}), 422, "since is not a time"),
        # Before the calendar's first UTC instant, after its last: out of range, not a 500.
        (client.get("/ui/sagas", params={"since": "0001-01-01T00:00:00+05:00"}), 422, "since is out of range"),
        (client.get("/ui/sagas", params={"until": "9999-12-31T23:59:59-05:00"}), 422, "until is out of range"),
        (client.get("/ui/sagas", params={"cursor": "garbage"}), 422, "cursor"),
        (client.get("/ui/sagas/no-such-saga"), 404, "no saga"),
        (client.get("/ui/items/no-such-item"), 404, "no-such-item"),
        (client.get("/ui/nowhere"), 404, "Not Found"),
        (post(client, f"/ui/sagas/{saga_id}/cancel", reason="nul\x00here"), 422, "NUL"),
        (post(client, f"/ui/sagas/{saga_id}/cancel", reason="  "), 422, "say why"),
        (post(client, f"/ui/sagas/{saga_id}/explode", reason="x"), 422, "is not a control"),
        (client.post("/ui/dead-letters/0/replay", data={}), 422, "letter_id"),
    ]
    for answer, status, said in cases:
        assert answer.status_code == status, (answer.status_code, said, answer.text[-400:])
        assert "text/html" in answer.headers["content-type"]
        assert said in answer.text, said
        assert "Traceback" not in answer.text


def test_a_revoked_token_ends_its_session_and_sign_out_ends_it_too(api: Api, client: TestClient) -> None:
    revoked = api.issue("user:bob", tenant="acme", scopes=OPERATOR_SCOPES)
    assert sign_in(client, revoked.secret).status_code == 303
    assert client.get("/ui/sagas").status_code == 200
    api.revoke(revoked.id)
    # The API's token check caches an answer for a few seconds (orchestrator.api.auth.CACHE_TTL_S).
    eventually(
        lambda: client.get("/ui/sagas", follow_redirects=False).status_code == 303,
        timeout=CACHE_TTL_S + 10,
        interval=0.5,
        what="the revoked token's session to end",
    )
    assert sign_in(client, revoked.secret).status_code == 401
    assert sign_in(client, api.token("user:bob", tenant="acme", scopes=OPERATOR_SCOPES)).status_code == 303
    page = client.get("/ui/sagas")
    out = client.post("/ui/signout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 200 and "Signed out" in out.text
    assert client.get("/ui/sagas", follow_redirects=False).status_code == 303


def test_dead_letters_are_listed_and_replayed_to_their_queue(api: Api, client: TestClient) -> None:
    letter = api.dead_letter()
    broker = api.wiring.store_client
    queue = keys.capability_queue(api.capability)
    before = broker.llen(queue)
    admin(client)
    listing = client.get("/ui/dead-letters").text
    assert f"cap.{api.capability}" in listing and f"/ui/dead-letters/{letter}/replay" in listing
    replayed = client.post(f"/ui/dead-letters/{letter}/replay", data={"csrf": csrf_of(listing)})
    assert replayed.status_code == 200
    assert f"dead letter {letter} replayed" in replayed.text
    assert f"/ui/dead-letters/{letter}/replay" not in replayed.text
    assert broker.llen(queue) == before + 1
    again = client.post(f"/ui/dead-letters/{letter}/replay", data={"csrf": csrf_of(listing)})
    assert again.status_code == 404


def test_queues_show_depth_and_age_and_mutex_scopes_show_holder_and_token(api: Api, client: TestClient) -> None:
    api.submit(f"ui.run.{api.capability}", "acme")
    scope = f"acct:{api.capability}"
    store = api.wiring.store_client
    store.set(keys.mutex_lease(scope), "payments-1@host", px=60_000)
    store.set(keys.fence(scope), 41)
    admin(client)
    queues = client.get("/ui/queues").text
    row = queues[queues.index(f"cap.{api.capability}") :].split("</tr>")[0]
    assert "no live worker" in row
    assert "<td>0</td>" not in row.split("</td>", 2)[1]  # at least the dispatch just made waits
    mutexes = client.get("/ui/mutexes").text
    row = mutexes[mutexes.index(scope) :].split("</tr>")[0]
    assert "payments-1@host" in row and "<td>41</td>" in row


def test_queue_figures_need_metrics_read_and_their_consumers_agents_read(api: Api, client: TestClient) -> None:
    scraper = api.token("user:prometheus", tenant="*", scopes=("metrics:read",))
    assert sign_in(client, scraper).status_code == 303
    queues = client.get("/ui/queues")
    assert queues.status_code == 200
    assert f"cap.{api.capability}" in queues.text and "needs agents:read" in queues.text
    assert client.get("/ui/dead-letters").status_code == 403
    assert client.get("/ui/mutexes").status_code == 403
    with TestClient(api.app) as other:
        assert sign_in(other, api.token("user:ann", tenant="*", scopes=("sagas:read",))).status_code == 303
        assert other.get("/ui/queues").status_code == 403
        assert other.get("/ui/mutexes").status_code == 200


def test_without_a_session_secret_the_page_needs_one_on_postgresql_and_makes_one_on_sqlite(
    backend: str, redis_target: RedisTarget, tmp_path: Path
) -> None:
    with ui_api(backend, tmp_path, redis_target, ui_session_secret=None) as bare, TestClient(bare.app) as client:
        answer = client.get("/ui/signin")
        if backend == "postgres":
            assert answer.status_code == 503
            assert "WORKYARD_UI_SESSION_SECRET" in answer.text
            return
        assert answer.status_code == 200
        secret = tmp_path / SECRET_FILE
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        assert len(secret.read_text().strip()) >= 32
        assert sign_in(client, ADMIN_TOKEN).status_code == 303


def test_a_bulk_control_counts_first_then_acts_on_what_it_counted(api: Api, client: TestClient) -> None:
    template = api.register({**waiting_template(api.capability), "name": f"ui.bulk.{api.capability}"})
    sagas = [api.submit(template, "acme") for _ in range(2)]
    admin(client)
    listing = client.get("/ui/sagas", params={"template": template, "state": "running"}).text
    assert "Count them first" in listing
    form = {"csrf": csrf_of(listing), "template": template, "state": "running", "action": "pause", "reason": "bulk"}
    counted = client.post("/ui/sagas/bulk", data=form)
    assert counted.status_code == 200
    assert f"2 saga(s) match state running, template {template}: nothing has been done yet." in counted.text
    assert all(shown_state(client.get(f"/ui/sagas/{s}").text) == "running" for s in sagas)
    assert "paused since" not in client.get(f"/ui/sagas/{sagas[0]}").text
    assert client.post("/ui/sagas/bulk", data={**form, "expect": "3"}).status_code == 409  # not what was counted
    done = client.post("/ui/sagas/bulk", data={**form, "expect": "2"})
    assert done.status_code == 200 and "pause: 2 done, 0 refused" in done.text
    assert all("paused since" in client.get(f"/ui/sagas/{s}").text for s in sagas)
    assert client.post("/ui/sagas/bulk", data={**form, "action": "rerun"}).status_code == 422
    assert (
        client.post(
            "/ui/sagas/bulk", data={k: v for k, v in form.items() if k not in ("template", "state")}
        ).status_code
        == 422
    )
    assert client.post("/ui/sagas/bulk", data={**form, "csrf": ""}).status_code == 403


def test_what_callers_wrote_is_shown_as_text_never_as_markup(api: Api, client: TestClient) -> None:
    saga_id = api.submit(f"ui.wait.{api.capability}", "acme", tag='<script>alert("x")</script>')
    admin(client)
    post(client, f"/ui/sagas/{saga_id}/pause", reason="<img src=x onerror=alert(1)>")
    page = client.get(f"/ui/sagas/{saga_id}").text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # the work item's title
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the audit trail's reason
    assert "<script>" not in page and "<img" not in page


def test_the_access_log_names_who_acted_through_the_page(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    admin(client)
    with caplog.at_level(logging.INFO, logger="workyard.access"):
        assert client.get("/ui/sagas").status_code == 200
    lines = [r for r in caplog.records if r.name == "workyard.access" and getattr(r, "path", "") == "/ui/sagas"]
    assert [getattr(r, "principal", None) for r in lines] == ["user:admin"]
