"""The webhook target policy: which addresses and URLs a webhook may reach (pure logic, no network)."""

from __future__ import annotations

import ipaddress

import pytest

from orchestrator.work.webhook_targets import address_refusal, url_refusal


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
