"""Where a webhook may POST: never to loopback, private, link-local, unique-local, multicast,
unspecified or cloud metadata addresses, unless an operator allows private targets
(``WORKYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS``, for on-premises receivers).

A URL is checked twice. At registration (``registration_refusal``): its literal address or
well-known name, then, for a name, every address it resolves to now, looked up in a thread of its
own for at most ``REGISTRATION_LOOKUP_TIMEOUT_S`` (a name that does not resolve in that time is
accepted: see there). At send time every address the host resolves to is checked again and the
connection goes to an address that was checked (``allowed_addresses``), so a name that resolves
elsewhere later (DNS rebinding) gains nothing. Cloud metadata, multicast and unspecified addresses
are refused even when private targets are allowed: no receiver lives there.

Names are looked up through a ``Resolver`` (``system_resolver`` unless one is passed), so tests
can map a name to any address without DNS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services: AWS, GCP, Azure, OpenStack, Oracle (169.254.169.254), AWS over
# IPv6, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# IPv6 prefixes that carry an IPv4 address inside (NAT64): the IPv4 address is what is reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A registration waits this long for its URL's name to resolve; the request is an API call, and a
# name the resolver is slow on is checked again at every send anyway.
REGISTRATION_LOOKUP_TIMEOUT_S = 2.0
# Lookups at registration running at once. A resolver that hangs holds a slot until it gives up;
# once all are held, registrations skip the lookup (as for a name that does not resolve) rather
# than pile up threads.
_lookup_slots = threading.BoundedSemaphore(8)


class Resolver(Protocol):
    """Looks a host up: the addresses it has, as text; OSError (``socket.gaierror``) when none."""

    def __call__(self, host: str, port: int) -> list[str]: ...


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` has, from the operating system's resolver."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class TargetRefused(Exception):
    """A webhook target that policy does not allow; ``reason`` is short and safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def address_refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be a webhook's target, or None when it may."""
    refused = _refused_as(address, allow_private=allow_private)
    return None if refused is None else f"{refused[0]} is {refused[1]}"


def _refused_as(address: Address, *, allow_private: bool) -> tuple[Address, str] | None:
    """The address that is refused (the IPv4 one inside a mapped or NAT64 address) and what it
    is (``loopback``, ``a cloud metadata address``, …), or None when ``address`` is allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            return _refused_as(embedded, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return address, "a cloud metadata address"
    if address.is_unspecified:
        return address, "unspecified"
    if address.is_multicast:
        return address, "multicast"
    if allow_private:
        return None
    if address.is_loopback:
        return address, "loopback"
    if address.is_link_local:
        return address, "link-local"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return address, "unique-local"
    if address.is_private:
        return address, "private"
    if not address.is_global:
        return address, "not a public address"
    return None


def literal_address(host: str) -> Address | None:
    """The address a URL's host names literally, also in the old IPv4 spellings that resolvers
    accept (``2130706433``, ``0x7f.1``, ``127.1``), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def url_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` may not be registered as a webhook, or None when it may (no DNS lookup)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018  (raises on a port that is not a number or out of range)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) URL with a host"
    if host in METADATA_NAMES:
        return f"{host} is a cloud metadata host"
    address = literal_address(host)
    if address is not None:
        return address_refusal(address, allow_private=allow_private)
    if not allow_private and (host in LOOPBACK_NAMES or host.endswith(".localhost")):
        return f"{host} is loopback"
    return None


def registration_refusal(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    timeout_s: float = REGISTRATION_LOOKUP_TIMEOUT_S,
) -> str | None:
    """Why ``url`` may not be registered as a webhook, or None when it may: ``url_refusal``, then,
    for a name, whether an address it resolves to now is refused (``example.test resolves to an
    address that is loopback``; the address itself is not told, so a tenant cannot read an
    internal zone through the API).

    A name that does not resolve, or not within ``timeout_s``, is accepted: the resolver the API
    asks may not be the one the orchestrators ask (split-horizon DNS), a record may be published
    after the webhook is registered, and a resolver's hiccup should not fail a registration. None
    of that weakens the policy: the sender checks every address at every send.
    """
    reason = url_refusal(url, allow_private=allow_private)
    if reason is not None:
        return reason
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if literal_address(host) is not None:
        return None
    addresses = _resolve_within(resolver, host, parts.port or (443 if parts.scheme == "https" else 80), timeout_s)
    for text in addresses or []:
        refused = _refused_as(ipaddress.ip_address(text.split("%", 1)[0]), allow_private=allow_private)
        if refused is not None:
            return f"{host} resolves to an address that is {refused[1]}"
    return None


def _resolve_within(resolver: Resolver, host: str, port: int, timeout_s: float) -> list[str] | None:
    """What ``resolver`` says ``host`` resolves to, or None when it does not answer (an error, or
    nothing within ``timeout_s``). The lookup runs in a daemon thread: ``getaddrinfo`` has no
    timeout of its own, and a thread left waiting on it must not keep the process alive."""
    deadline = time.monotonic() + timeout_s
    if not _lookup_slots.acquire(timeout=timeout_s):
        return None
    answer: list[list[str]] = []

    def lookup() -> None:
        try:
            answer.append(resolver(host, port))
        except (OSError, UnicodeError, ValueError):
            pass  # no such name (or not one the resolver takes): nothing to check now
        finally:
            _lookup_slots.release()

    thread = threading.Thread(target=lookup, name="webhook-dns", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    return answer[0] if answer else None


def allowed_addresses(host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver) -> list[str]:
    """Every address ``host`` resolves to, once each, all allowed; TargetRefused naming the first
    that is not (one bad address refuses the name: the resolver may hand out any of them)."""
    name = host.rstrip(".").lower()
    if name in METADATA_NAMES:
        raise TargetRefused(f"{name} is a cloud metadata host")
    # A failed lookup (socket.gaierror) is the caller's to retry: it says nothing about policy.
    addresses: list[str] = []
    for text in resolver(host, port):
        reason = address_refusal(ipaddress.ip_address(text.split("%", 1)[0]), allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(reason)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    return addresses
