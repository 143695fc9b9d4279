"""Webhooks cannot reach what a tenant must not (loopback, private and metadata addresses), keep
their secrets secret, share the sender fairly between tenants, and can be deleted, disabled,
enabled, rotated and redelivered by their own tenant only; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import text

from config.settings import Settings
from models.base import utcnow
from orchestrator.service.webhooks import WebhookSender
from orchestrator.storage.db import make_engine, make_session_factory
from orchestrator.work import webhooks
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions
from tests.support import eventually
from tests.webhook_receiver import Receiver, webhook_receiver

REFUSED = [
    ("http://127.0.0.1:8700/hooks", "127.0.0.1 is loopback"),
    ("http://[::1]/hooks", "::1 is loopback"),
    ("http://localhost:5555/api/worker/queue/cancel-consumer/w1?queue=cap.payments", "localhost is loopback"),
    ("http://2130706433/hooks", "127.0.0.1 is loopback"),  # 127.0.0.1 spelled as one number
    ("http://[::ffff:127.0.0.1]/hooks", "127.0.0.1 is loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a cloud metadata host"),
    ("http://10.1.2.3/hooks", "10.1.2.3 is private"),
    ("http://192.168.0.10/hooks", "192.168.0.10 is private"),
    ("http://169.254.10.1/hooks", "169.254.10.1 is link-local"),
    ("http://[fe80::1]/hooks", "fe80::1 is link-local"),
    ("http://[fd12:3456::1]/hooks", "fd12:3456::1 is unique-local"),
    ("http://224.0.0.1/hooks", "224.0.0.1 is multicast"),
    ("http://0.0.0.0:8700/hooks", "0.0.0.0 is unspecified"),
]


@pytest.fixture
def hooks(token: TokenFactory) -> Headers:
    return token("user:hooks", scopes=["webhooks"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def configure(client: TestClient, **changes: Any) -> Settings:
    """Change the running API's settings (the operator's switches), as a restart with them would."""
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    wiring.settings = wiring.settings.model_copy(update=changes)
    return cast(Settings, wiring.settings)


def register(client: TestClient, headers: Headers, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, "events": events or ["*"]}, headers=headers)
    assert response.status_code == 201, response.json()
    return dict(response.json())


def emit(client: TestClient, tenant: str, event: str = "sla.warning") -> None:
    with sessions(client).begin() as session:
        webhooks._cache.clear()  # registered just now: look the webhooks up again
        webhooks.emit(session, tenant, event, {"item": {"id": "x"}}, utcnow())


def log(client: TestClient, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/webhooks/deliveries", params=params, headers=headers)
    assert response.status_code == 200, response.json()
    return list(response.json())


def send(client: TestClient, settings: Settings, **kwargs: Any) -> int:
    sender = WebhookSender(sessions(client), settings, **kwargs)
    try:
        return sender.deliver_due()
    finally:
        sender.close()


def signed_with(secret: str, request: Any) -> bool:
    expected = hmac.new(
        secret.encode(), request.headers["x-workyard-timestamp"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    return bool(request.headers["x-workyard-signature"] == f"sha256={expected}")


# --- targets -------------------------------------------------------------------------------------


def test_loopback_private_and_metadata_targets_are_refused_at_registration(client: TestClient, hooks: Headers) -> None:
    before = counts(client)
    for url, reason in REFUSED:
        response = client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=hooks)
        assert response.status_code == 422, (url, response.json())
        assert [(d["path"], d["message"]) for d in error(response)["details"]] == [("url", reason)], url
    assert counts(client) == before


def test_an_operator_may_allow_private_targets_but_never_metadata(client: TestClient, hooks: Headers) -> None:
    configure(client, webhook_allow_private_targets=True)
    for url in ("http://127.0.0.1:9/hooks", "http://localhost:9/hooks", "http://10.1.2.3/hooks", "http://[fd00::1]/"):
        register(client, hooks, url)
    for url in ("http://169.254.169.254/latest/", "http://metadata.google.internal/", "http://[fd00:ec2::254]/"):
        response = client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=hooks)
        assert response.status_code == 422 and "metadata" in error(response)["details"][0]["message"], url


class FakeDNS:
    """A resolver that knows the names it is given; any other name does not resolve."""

    def __init__(self, names: dict[str, list[str]]):
        self.names = names

    def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])


def test_a_name_is_resolved_at_registration_and_refused_when_it_points_inside(
    client: TestClient, hooks: Headers
) -> None:
    dns = FakeDNS({"inside.test": ["127.0.0.1"], "office.test": ["10.0.0.5"], "hooks.acme.test": ["93.184.215.14"]})
    client.app.state.wiring.resolver = dns  # type: ignore[attr-defined]
    before = counts(client)
    for url, reason in (
        ("http://inside.test:8700/hooks", "inside.test resolves to an address that is loopback"),
        ("https://office.test/hooks", "office.test resolves to an address that is private"),
    ):
        response = client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=hooks)
        assert response.status_code == 422, (url, response.json())
        assert error(response)["message"] == f"webhook target not allowed: {reason}"
        assert [(d["path"], d["message"]) for d in error(response)["details"]] == [("url", reason)]
    assert counts(client) == before
    # A public address is accepted, and so is a name that does not resolve (yet, or from here):
    # the sender checks every address again at every send.
    public = register(client, hooks, "https://hooks.acme.test/workyard")
    unresolved = register(client, hooks, "https://not-yet.acme.test/workyard")
    assert {h["id"] for h in client.get("/api/v1/webhooks", headers=hooks).json()} == {public["id"], unresolved["id"]}
    # An operator who allows private targets allows names that resolve to them.
    configure(client, webhook_allow_private_targets=True)
    register(client, hooks, "https://office.test/hooks")


def test_a_name_that_resolved_to_a_public_address_at_registration_is_checked_again_at_send_time(
    client: TestClient, hooks: Headers, receiver: Receiver
) -> None:
    # DNS rebinding: public when registered, loopback when sent; nothing is sent.
    dns = FakeDNS({"rebind.test": ["93.184.215.14"]})
    client.app.state.wiring.resolver = dns  # type: ignore[attr-defined]
    settings = configure(client)
    hook = register(client, hooks, receiver.url.replace("127.0.0.1", "rebind.test"))
    dns.names["rebind.test"] = ["127.0.0.1"]
    emit(client, "acme")
    assert send(client, settings, resolver=dns) == 1
    [delivery] = log(client, hooks, webhook_id=hook["id"])
    assert (delivery["state"], delivery["last_error"]) == ("failed", "target not allowed: 127.0.0.1 is loopback")
    assert receiver.requests == []


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(
    client: TestClient, hooks: Headers, receiver: Receiver
) -> None:
    # Registered while private targets were allowed; the sender runs where they are not: the
    # name is checked again after DNS, and nothing is sent.
    allowed = configure(client, webhook_allow_private_targets=True)
    hook = register(client, hooks, receiver.url.replace("127.0.0.1", "localhost"))
    emit(client, "acme")
    assert send(client, allowed.model_copy(update={"webhook_allow_private_targets": False})) == 1
    [delivery] = log(client, hooks, webhook_id=hook["id"])
    assert delivery["state"] == "failed" and delivery["last_status"] is None
    assert delivery["last_error"] in (
        "target not allowed: 127.0.0.1 is loopback",
        "target not allowed: ::1 is loopback",
    )
    assert receiver.requests == []
    # The same delivery, sent where private targets are allowed, arrives: the refusal was the policy.
    client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=hooks)
    assert send(client, allowed) == 1 and len(receiver.requests) == 1


def test_the_delivery_log_keeps_a_short_reason_never_the_answer(
    client: TestClient, hooks: Headers, receiver: Receiver
) -> None:
    settings = configure(client, webhook_allow_private_targets=True)
    answered = register(client, hooks, receiver.url)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    closed = register(client, hooks, f"http://127.0.0.1:{closed_port}/hooks")
    receiver.statuses = [500]
    emit(client, "acme")
    assert send(client, settings) == 2
    by_hook = {d["webhook_id"]: d for d in log(client, hooks)}
    assert (by_hook[answered["id"]]["last_status"], by_hook[answered["id"]]["last_error"]) == (500, "HTTP 500")
    assert (by_hook[closed["id"]]["last_status"], by_hook[closed["id"]]["last_error"]) == (None, "connect refused")


def test_https_verifies_the_certificate_against_the_urls_host(
    client: TestClient, hooks: Headers, tmp_path: Path
) -> None:
    # The sender connects to the address it checked, yet TLS still names the URL's host: SNI is
    # "localhost", and a certificate for another name is refused.
    settings = configure(client, webhook_allow_private_targets=True)
    authority = CertificateAuthority()
    trust = ssl.create_default_context(cadata=authority.pem)
    for name, delivered in (("localhost", True), ("elsewhere.example", False)):
        with webhook_receiver(tls=authority.server_context(name, tmp_path), host="localhost") as receiver:
            hook = register(client, hooks, receiver.url)
            emit(client, "acme")
            assert send(client, settings, verify=trust) == 1
            [delivery] = log(client, hooks, webhook_id=hook["id"])
            if delivered:
                assert delivery["state"] == "delivered" and len(receiver.requests) == 1
            else:
                assert delivery["last_error"] == "TLS certificate not valid" and receiver.requests == []
            assert "localhost" in receiver.server_names
            client.delete(f"/api/v1/webhooks/{hook['id']}", headers=hooks)


# --- secrets -------------------------------------------------------------------------------------


def test_a_secret_is_shown_once_stored_encrypted_and_never_logged(
    client: TestClient, hooks: Headers, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = configure(client, webhook_allow_private_targets=True)
    # Every statement and its parameters, as an engine with echo on would log them.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    hook = register(client, hooks, receiver.url)
    first = hook["secret"]
    assert first.startswith("whsec_")
    listed = client.get("/api/v1/webhooks", headers=hooks).json()
    assert [h["id"] for h in listed] == [hook["id"]] and all("secret" not in h for h in listed)
    assert "secret" not in client.get(f"/api/v1/webhooks/{hook['id']}", headers=hooks).json()
    rotated = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=hooks)
    assert rotated.status_code == 200
    second = rotated.json()["secret"]
    assert second.startswith("whsec_") and second != first
    emit(client, "acme")
    assert send(client, settings) == 1
    assert signed_with(second, receiver.requests[0]) and not signed_with(first, receiver.requests[0])
    with sessions(client)() as session:
        stored = session.execute(text("SELECT * FROM webhooks")).mappings().one()
    assert first not in str(dict(stored)) and second not in str(dict(stored))
    assert any("INSERT INTO webhooks" in r.getMessage() for r in caplog.records)  # the capture works
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert first not in logged and second not in logged


# --- fairness ------------------------------------------------------------------------------------


def test_one_tenants_hanging_hooks_do_not_hold_back_anothers(
    client: TestClient, token: TokenFactory, hooks: Headers, receiver: Receiver
) -> None:
    settings = configure(
        client, webhook_allow_private_targets=True, webhook_concurrency=4, webhook_tenant_concurrency=2
    )
    # Longer than the test may take: only the tenant cap can get beta's delivery past acme's.
    settings = settings.model_copy(update={"webhook_timeout_s": 120})
    beta = token("user:beta-hooks", tenant="beta", scopes=["webhooks"])
    with webhook_receiver() as hanging:
        hanging.hold = threading.Event()
        for _ in range(10):
            register(client, hooks, hanging.url)
        register(client, beta, receiver.url)
        emit(client, "acme")  # ten deliveries, due before beta's
        emit(client, "beta")
        sender = WebhookSender(sessions(client), settings)
        stop = threading.Event()

        def run() -> None:  # the orchestrator's webhook loop
            while not stop.is_set():
                if not sender.tick():
                    stop.wait(0.05)

        loop = threading.Thread(target=run)
        loop.start()
        try:
            eventually(lambda: len(receiver.requests) == 1, what="beta's delivery while acme's hang")
            eventually(lambda: hanging.held == 2, what="acme's first two POSTs held")
            assert not hanging.hold.is_set() and len(hanging.requests) == 2  # acme's cap, all unanswered
            eventually(lambda: [d["state"] for d in log(client, beta)] == ["delivered"], what="beta's log")
        finally:
            hanging.hold.set()
            stop.set()
            loop.join(timeout=60)
            sender.close()
        # Released, acme's deliveries all go out: the cap held them back, it lost none.
        while send(client, settings):
            pass
        assert len(hanging.requests) == 10


def test_the_tenant_cap_holds_across_orchestrator_processes(
    client: TestClient, token: TokenFactory, hooks: Headers, receiver: Receiver
) -> None:
    # Two senders, as two orchestrator processes run them (each with an engine of its own), with
    # room for 4 POSTs each and a cap of 2 per tenant: together they send 2 of acme's, not 4.
    settings = configure(
        client, webhook_allow_private_targets=True, webhook_concurrency=4, webhook_tenant_concurrency=2
    )
    settings = settings.model_copy(update={"webhook_timeout_s": 120})  # leases outlast the test
    beta = token("user:beta-hooks", tenant="beta", scopes=["webhooks"])
    url = client.app.state.wiring.engine.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    other_engine = make_engine(url)
    with webhook_receiver() as hanging:
        hanging.hold = threading.Event()
        register(client, hooks, hanging.url)
        register(client, beta, receiver.url)
        for _ in range(6):
            emit(client, "acme")  # six deliveries, due before beta's
        emit(client, "beta")
        senders = [
            WebhookSender(sessions(client), settings),
            WebhookSender(make_session_factory(other_engine), settings),
        ]
        ticks = [0, 0]
        stop = threading.Event()

        def run(index: int) -> None:  # one orchestrator's webhook loop
            while not stop.is_set():
                ticks[index] += 1
                if not senders[index].tick():
                    stop.wait(0.02)

        loops = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for loop in loops:
            loop.start()
        try:
            eventually(lambda: len(receiver.requests) == 1, what="beta's delivery while acme's hang")
            eventually(lambda: hanging.held == 2, what="acme's first two POSTs held")
            # Both loops go round many more times while acme's two hang: neither sends a third.
            seen = list(ticks)
            eventually(lambda: all(t >= s + 20 for t, s in zip(ticks, seen, strict=True)), what="both loops ticking")
            assert len(hanging.requests) == 2 and hanging.most_active == 2
            eventually(lambda: [d["state"] for d in log(client, beta)] == ["delivered"], what="beta's log")
            # Released, the rest go out, still never more than two at once.
            hanging.hold.set()
            eventually(lambda: [d["state"] for d in log(client, hooks)] == ["delivered"] * 6, what="acme's deliveries")
        finally:
            hanging.hold.set()
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
            for sender in senders:
                sender.close()
            other_engine.dispose()
        assert len(hanging.requests) == 6 and hanging.most_active == 2


# --- managing webhooks ---------------------------------------------------------------------------


def test_disable_enable_delete_and_redeliver(client: TestClient, hooks: Headers, receiver: Receiver) -> None:
    settings = configure(client, webhook_allow_private_targets=True)
    hook = register(client, hooks, receiver.url)
    path = f"/api/v1/webhooks/{hook['id']}"
    emit(client, "acme")
    disabled = client.post(f"{path}/disable", headers=hooks)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    emit(client, "acme")  # a disabled webhook hears no new events
    assert send(client, settings) == 0  # and its pending delivery waits
    assert [d["state"] for d in log(client, hooks)] == ["pending"]
    assert client.get("/api/v1/webhooks", headers=hooks).json()[0]["disabled_at"] is not None
    assert client.post(f"{path}/enable", headers=hooks).json()["disabled_at"] is None
    assert send(client, settings) == 1
    [delivery] = log(client, hooks)
    assert delivery["state"] == "delivered"
    again = client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=hooks)
    assert again.status_code == 202 and again.json()["state"] == "pending" and again.json()["attempts"] == 0
    assert send(client, settings) == 1
    assert [r.headers["x-workyard-delivery"] for r in receiver.requests] == [str(delivery["id"])] * 2
    emit(client, "acme")
    assert client.delete(path, headers=hooks).status_code == 204
    assert send(client, settings) == 0 and len(receiver.requests) == 2  # its pending delivery failed
    assert client.get(path, headers=hooks).status_code == 404
    assert client.get("/api/v1/webhooks", headers=hooks).json() == []
    assert log(client, hooks) == []
    assert client.delete(path, headers=hooks).status_code == 404
    with sessions(client)() as session:
        stored = session.execute(text("SELECT secret_encrypted FROM webhooks")).scalar_one()
    assert stored == ""  # a deleted webhook's secret is gone


def test_another_tenants_webhook_is_a_404_on_every_route(
    client: TestClient, token: TokenFactory, hooks: Headers, receiver: Receiver
) -> None:
    settings = configure(client, webhook_allow_private_targets=True)
    hook = register(client, hooks, receiver.url)
    emit(client, "acme")
    send(client, settings)
    [delivery] = log(client, hooks)
    beta = token("user:beta-hooks", tenant="beta", scopes=["webhooks"])
    before = counts(client)
    path = f"/api/v1/webhooks/{hook['id']}"
    calls = [
        ("get", path),
        ("delete", path),
        ("post", f"{path}/disable"),
        ("post", f"{path}/enable"),
        ("post", f"{path}/rotate-secret"),
        ("post", f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver"),
        ("get", f"/api/v1/webhooks/deliveries?webhook_id={hook['id']}"),
    ]
    missing = client.get("/api/v1/webhooks/nope", headers=beta).json()
    for method, url in calls:
        response = client.request(method, url, headers=beta)
        assert response.status_code == 404, (method, url, response.json())
        assert set(response.json()) == set(missing)
    assert counts(client) == before
    assert client.get("/api/v1/webhooks", headers=beta).json() == [] and log(client, beta) == []
    operator = token("user:ops-hooks", tenant="*", scopes=["webhooks"])
    assert client.post(f"{path}/disable", headers=operator).status_code == 200  # all tenants': every one
    assert client.get(path, headers=hooks).json()["disabled_at"] is not None


def test_the_webhook_routes_are_in_the_openapi_with_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/api/v1/webhooks/{webhook_id}", "delete"): {"401", "403", "404"},
        ("/api/v1/webhooks/{webhook_id}", "get"): {"401", "403", "404"},
        ("/api/v1/webhooks/{webhook_id}/disable", "post"): {"401", "403", "404"},
        ("/api/v1/webhooks/{webhook_id}/enable", "post"): {"401", "403", "404"},
        ("/api/v1/webhooks/{webhook_id}/rotate-secret", "post"): {"401", "403", "404"},
        ("/api/v1/webhooks/deliveries/{delivery_id}/redeliver", "post"): {"401", "403", "404"},
        ("/api/v1/webhooks", "post"): {"401", "403", "422"},
    }
    for (path, method), statuses in expected.items():
        assert statuses <= set(paths[path][method]["responses"]), (path, method)
    assert "secret" not in paths["/api/v1/webhooks"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ].get("items", {}).get("properties", {})


class CertificateAuthority:
    """A throwaway CA that issues a server certificate for one host name."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workyard test CA")])
        self.cert = (
            self._builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def _builder(self, subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    def server_context(self, host: str, directory: Path) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        cert = (
            self._builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{host}.pem", directory / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context
