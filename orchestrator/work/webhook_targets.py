"""Where a webhook may POST: never to loopback, private, link-local, unique-local, multicast,
unspecified or cloud metadata addresses, unless an operator allows private targets
(``WORKYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS``, for on-premises receivers).

A URL is checked twice: at registration (its literal address or well-known name: quick, no DNS,
so a request never waits on a resolver) and at send time, where every address its host resolves
to is checked and the connection goes to an address that was checked (``allowed_addresses``), so a
name that resolves elsewhere later (DNS rebinding) gains nothing. Cloud metadata, multicast and
unspecified addresses are refused even when private targets are allowed: no receiver lives there.
"""

from __future__ import annotations

import ipaddress
import socket
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


class TargetRefused(Exception):
    """A webhook target that policy does not allow; ``reason`` is short and safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def address_refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be a webhook's target, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            return address_refusal(embedded, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_unspecified:
        return f"{address} is unspecified"
    if address.is_multicast:
        return f"{address} is multicast"
    if allow_private:
        return None
    if address.is_loopback:
        return f"{address} is loopback"
    if address.is_link_local:
        return f"{address} is link-local"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return f"{address} is unique-local"
    if address.is_private:
        return f"{address} is private"
    if not address.is_global:
        return f"{address} is not a public address"
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


def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to, once each, all allowed; TargetRefused naming the first
    that is not (one bad address refuses the name: the resolver may hand out any of them)."""
    name = host.rstrip(".").lower()
    if name in METADATA_NAMES:
        raise TargetRefused(f"{name} is a cloud metadata host")
    # A failed lookup (socket.gaierror) is the caller's to retry: it says nothing about policy.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0])
        reason = address_refusal(ipaddress.ip_address(text.split("%", 1)[0]), allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(reason)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    return addresses
