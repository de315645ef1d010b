"""Where webhooks may be sent: http(s) URLs whose addresses are public, unless configuration says otherwise.

An integrator registers a URL; without these checks the service could be made to post to itself, to the
county's internal network, or to a cloud metadata service (server-side request forgery). The URL is checked
when it is registered (a literal address, or a name resolving to a refused one, is refused then), and again at
every send: the name is resolved, every address it resolves to must be allowed, and the request is sent to
the checked address itself (with the name in ``Host`` and in TLS SNI), so that a name re-pointed after
registration (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, GCP, OpenStack, Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
    )
)
"""Cloud instance-metadata services, refused even where other non-global addresses are not (they are all
non-global today; listed so that the intent survives a change of the rule below)."""

RESOLVE_TIMEOUT_SECONDS = 5.0


class AddressRefused(Exception):
    """The URL is not one webhooks may be sent to; ``reason`` says why (in English, for the delivery log)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts, and (after resolution) the address to connect to."""

    url: SplitResult
    host: str
    port: int
    address: IPAddress | None = None

    @property
    def https(self) -> bool:
        return self.url.scheme == "https"

    @property
    def host_header(self) -> str:
        """``Host`` as the URL names it (the port only when not the scheme's default)."""
        default = 443 if self.https else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    def pinned_url(self) -> str:
        """The URL with the host replaced by the checked address."""
        if self.address is None:
            return self.url.geturl()
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return self.url._replace(netloc=f"{literal}:{self.port}").geturl()


def address_allowed(address: IPAddress, allow_private: bool) -> bool:
    """Whether ``address`` may receive webhooks: a globally routable unicast address that is not a metadata
    service, or anything when ``allow_private``."""
    if allow_private:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return False
    return address.is_global and not address.is_multicast


def parse_url(url: str) -> Target:
    """Check the form of a webhook URL.

    Raises:
        AddressRefused: not http(s), no host, credentials in it, a bad port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("only http and https URLs are allowed")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("credentials in the URL are not allowed (they would be logged)")
    if parts.fragment:
        raise AddressRefused("a URL fragment is not sent and not allowed")
    return Target(parts, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def literal_address(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target, allow_private: bool) -> Target:
    """``target`` with the address to connect to: the literal, or the first address the name resolves to,
    after checking that **every** address it resolves to is allowed.

    Raises:
        AddressRefused: a refused address, or the name does not resolve.
    """
    literal = literal_address(target.host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError) as error:
            raise AddressRefused(f"the host name does not resolve ({type(error).__name__})") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise AddressRefused("the host name does not resolve")
    for address in addresses:
        if not address_allowed(address, allow_private):
            raise AddressRefused(f"the address {address} is not public (loopback, private, link-local or metadata)")
    return Target(target.url, target.host, target.port, addresses[0])


async def check_registration(url: str, allow_private: bool) -> None:
    """Check a URL being registered: its form, and its address if it is a literal or a resolvable name. A
    name that does not resolve now is accepted (it is checked again at every send).

    Raises:
        AddressRefused: the URL or an address it names is refused.
    """
    target = parse_url(url)
    try:
        await resolve(target, allow_private)
    except AddressRefused as refused:
        if literal_address(target.host) is not None or "does not resolve" not in refused.reason:
            raise
