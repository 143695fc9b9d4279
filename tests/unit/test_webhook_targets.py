"""The webhook target policy: which addresses and URLs a webhook may reach (pure logic, no network)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest

from orchestrator.work.webhook_targets import address_refusal, registration_refusal, url_refusal


class FakeDNS:
    """A resolver that knows the names it is given (a name it does not know does not resolve)."""

    def __init__(self, names: dict[str, list[str]]):
        self.names = names
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped: the IPv4 address is what is reached
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.169.254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not a public address"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    refusal = address_refusal(ipaddress.ip_address(address), allow_private=False)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_private=False) is None


def test_allowing_private_targets_keeps_metadata_multicast_and_unspecified_refused() -> None:
    for address in ("127.0.0.1", "::1", "10.0.0.1", "fd12::1", "169.254.1.1"):
        assert address_refusal(ipaddress.ip_address(address), allow_private=True) is None
    for address in ("169.254.169.254", "fd00:ec2::254", "224.0.0.1", "0.0.0.0"):
        assert address_refusal(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://LOCALHOST./hooks",
        "http://api.localhost/hooks",
        "http://0x7f.1/hooks",
        "http://127.1/hooks",
        "http://017700000001/hooks",
        "http://[::ffff:7f00:1]/hooks",
        "http://Metadata.Google.Internal./computeMetadata/v1/",
        "http://instance-data/latest/",
        "gopher://example.com/",
        "http://:80/",
        "http://example.com:99999/",
    ],
)
def test_urls_are_refused_by_literal_address_and_well_known_name(url: str) -> None:
    assert url_refusal(url, allow_private=False) is not None


def test_names_are_left_to_the_send_time_check() -> None:
    assert url_refusal("https://hooks.example.com/workyard", allow_private=False) is None


DNS = FakeDNS(
    {
        "loopback.test": ["127.0.0.1"],
        "private.test": ["93.184.215.14", "10.0.0.5"],  # one refused address refuses the name
        "mapped.test": ["::ffff:169.254.169.254"],
        "public.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    }
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://loopback.test:8080/hooks", "loopback.test resolves to an address that is loopback"),
        ("https://Private.Test./hooks", "private.test resolves to an address that is private"),
        ("https://mapped.test/", "mapped.test resolves to an address that is a cloud metadata address"),
        ("http://127.0.0.1/hooks", "127.0.0.1 is loopback"),  # literal: refused without a lookup
    ],
)
def test_names_that_resolve_to_refused_addresses_are_refused_at_registration(url: str, reason: str) -> None:
    assert registration_refusal(url, allow_private=False, resolver=DNS) == reason


def test_names_that_resolve_to_public_addresses_or_not_at_all_are_accepted_at_registration() -> None:
    dns = FakeDNS(DNS.names)
    assert registration_refusal("https://public.test/hooks", allow_private=False, resolver=dns) is None
    assert registration_refusal("http://nowhere.test:81/hooks", allow_private=False, resolver=dns) is None
    assert dns.asked == [("public.test", 443), ("nowhere.test", 81)]
    # Allowed private targets: a name resolving to one is accepted, one resolving to metadata is not.
    assert registration_refusal("http://private.test/", allow_private=True, resolver=dns) is None
    assert registration_refusal("http://mapped.test/", allow_private=True, resolver=dns) is not None


def test_a_hanging_resolver_costs_a_registration_its_timeout_only() -> None:
    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["127.0.0.1"]

    started = time.monotonic()
    try:
        assert registration_refusal("http://slow.test/", allow_private=False, resolver=hanging, timeout_s=0.2) is None
        assert time.monotonic() - started < 2
    finally:
        release.set()


def test_a_secret_key_that_is_not_a_fernet_key_is_refused_when_the_settings_are_read() -> None:
    from cryptography.fernet import Fernet
    from pydantic import ValidationError

    from config.settings import Settings

    good = Fernet.generate_key().decode()
    assert Settings(secret_key=f"{good}, {Fernet.generate_key().decode()}").secret_key is not None
    for bad in ("hunter2", f"{good},short", " , "):
        with pytest.raises(ValidationError, match="WORKYARD_SECRET_KEY") as refused:
            Settings(secret_key=bad)
        assert good not in str(refused.value) and "hunter2" not in str(refused.value)
    # And it is never shown: not in the settings' repr, not in an error about it.
    assert good not in repr(Settings(secret_key=good))


def test_reencrypting_moves_a_secret_to_the_first_key_once() -> None:
    from cryptography.fernet import Fernet

    from orchestrator.storage.secret_box import SecretBox, SecretKeyError

    old, new, other = (Fernet.generate_key().decode() for _ in range(3))
    token = SecretBox([old]).encrypt("whsec_x")
    both = SecretBox([new, old])
    fresh = both.reencrypt(token)
    assert fresh is not None and SecretBox([new]).decrypt(fresh) == "whsec_x"
    assert both.reencrypt(fresh) is None  # already under the first key: nothing to write
    with pytest.raises(SecretKeyError):
        SecretBox([new, other]).reencrypt(token)
