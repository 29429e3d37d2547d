"""Where a download may go: only to public addresses, and to the very address that was checked.

Audio URLs come from a third party, so each hop of a download is resolved once and refused if
any of its addresses is not globally routable (loopback, private, shared, link-local, site-local,
metadata service, and those same addresses inside IPv6 wrappers). The request is then sent to
the checked address, so a DNS server that answers differently at connect time (DNS rebinding)
cannot steer it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from handlers.base import HandlerError

__all__ = ["IPAddress", "checked_address", "invalid", "is_public", "pinned_request", "where"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""An address `getaddrinfo` answered."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


async def checked_address(url: str, allow_private_networks: bool) -> IPAddress | None:
    """Refuse other schemes, and hosts with any address that is not public (unless allowed);
    return the checked address to connect to (None when private networks are allowed)."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise invalid() from exc
    if scheme not in ("http", "https") or not host:
        raise HandlerError(
            f"download from {where(url)} refused: only http and https URLs are fetched",
            retryable=False,
        )
    if allow_private_networks:
        return None
    try:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise HandlerError(
            f"download from {where(url)} failed: cannot resolve the host",
            blame="unavailable",
        ) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not is_public(address):
            raise HandlerError(
                f"download from {where(url)} refused: {address} is not a public address "
                "(set RELAY_ALLOW_PRIVATE_NETWORKS=true for local sources)",
                retryable=False,
            )
    if not addresses:
        raise HandlerError(
            f"download from {where(url)} failed: cannot resolve the host", blame="unavailable"
        )
    return addresses[0]


def pinned_request(
    url: str, address: IPAddress | None
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, extra headers and httpx extensions that send a request for `url` to the
    checked `address`. The connection is not kept for another request: pooled connections are
    keyed by address, and a later request for another name must not reuse a TLS session whose
    certificate was checked against this one."""
    original = httpx.URL(url)
    if address is None or original.host == str(address):
        return original, {}, {}
    headers = {"Host": original.netloc.decode("ascii"), "Connection": "close"}
    return (
        original.copy_with(host=str(address)),
        headers,
        {"sni_hostname": original.raw_host.decode("ascii")},
    )


def is_public(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses, looking inside IPv6 wrappers.

    The base is `ipaddress`'s `is_global`: the IANA special-purpose registries as this Python
    knows them (100.64.0.0/10 shared address space is not global, rightly). On top of it, what
    Python 3.11's `is_global` still lets through: multicast, reserved ranges, and fec0::/10
    site-local (deprecated by RFC 3879, so absent from the registry, yet still routed inside
    some networks). The other predicates are implied by `is_global` today and kept so that a
    later Python's registry changes cannot open a hole.

    An IPv4-mapped address (::ffff:a.b.c.d) is judged as the IPv4 address it is; a 6to4
    address is refused when the IPv4 address inside it is not public. NAT64 (64:ff9b::/96) and
    IPv4-compatible addresses lie in the reserved ::/8 and are refused whatever they embed; the
    NAT64 look inside stays as a second line.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.is_site_local or (embedded is not None and not is_public(embedded)):
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def invalid() -> HandlerError:
    return HandlerError("download refused: the URL is not valid", retryable=False)


def where(url: str) -> str:
    """The host (and port) of `url` for messages; never the path, query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "an invalid URL"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host
