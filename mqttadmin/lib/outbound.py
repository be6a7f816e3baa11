"""The outbound policy: which destinations the portal's own HTTP requests may reach.

Webhook URLs (subscription actions, alert-rule notifications) are typed by
operators. Unchecked, they reach the portal's own network: cloud metadata at
169.254.169.254, Redis on loopback, private services; and the error of a failed
call tells what answered there. By default every destination that is not a public
unicast address is refused: loopback, link-local, private (RFC 1918, fc00::/7),
CGNAT (100.64.0.0/10), unspecified, multicast, reserved and documentation ranges,
and IPv6 forms that embed such an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d,
64:ff9b::/96, 2002::/16). `MQTTADMIN_OUTBOUND_ALLOW` opens addresses, CIDR ranges
and host names an installation needs.

The guarantee is the connect-time check: `PolicyNetworkBackend` resolves the host,
checks every address it resolved to and connects to an address it checked, so a
DNS server that answers differently the second time (rebinding) gains nothing. TLS
still verifies the URL's host name (httpcore passes it as SNI). `url_error()` only
catches literal addresses early, when a URL is saved.

No library is used for this: the candidates on PyPI are young (0.x, 2026) or wrap
`requests`; the policy is the stdlib `ipaddress` and one httpcore backend.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.utils.translation import gettext as _

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused whatever Python's `is_global` says in this version (it has changed over
# releases): the ranges the policy promises, spelled out.
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # unspecified / "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",  # unique local, e.g. fd00:ec2::254 (EC2 metadata)
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# IPv6 prefixes whose last 32 bits are an IPv4 address (NAT64).
NAT64_NETWORKS = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)
HOST_NAME = re.compile(
    r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$"
)
# What inet_aton reads as an IPv4 address: 2130706433, 0x7f.1, 017700000001.
NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class OutboundBlocked(httpcore.ConnectError):
    """A destination the outbound policy refuses; nothing was sent to it.

    A ConnectError to httpcore, so httpx raises `httpx.ConnectError` with this as
    its `__cause__`.
    """


def blocked_message(host: str) -> str:
    return _("%(host)s is blocked by the outbound policy (not a public address).") % {
        "host": host
    }


@dataclass(frozen=True)
class OutboundAllow:
    """What `MQTTADMIN_OUTBOUND_ALLOW` opens: networks and host names."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from "*.example.com": ".example.com"

    def allows_name(self, host: str) -> bool:
        name = _normal_name(host)
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        return any(
            candidate in network
            for candidate in _forms_of(address)
            for network in self.networks
            if candidate.version == network.version
        )


def parse_allow(entries: Iterable[str]) -> OutboundAllow:
    """Parse the allow list; raises ValueError naming an entry that is neither an
    address, a CIDR range nor a host name."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    suffixes: list[str] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=True))
            continue
        except ValueError as exc:
            if "/" in entry:
                raise ValueError(f"{entry!r} is not a CIDR range: {exc}") from None
        name = _normal_name(entry)
        if not HOST_NAME.match(name):
            raise ValueError(
                f"{entry!r} is not an address, a CIDR range (10.0.0.0/8) or a host "
                "name (hooks.internal, *.example.com)"
            )
        if name.startswith("*."):
            suffixes.append(name[1:])
        else:
            names.add(name)
    return OutboundAllow(tuple(networks), frozenset(names), tuple(suffixes))


@functools.lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> OutboundAllow:
    return parse_allow(entries)


def current_allow() -> OutboundAllow:
    """The allow list from settings, read on each use (tests override it)."""
    from django.conf import settings

    value = getattr(settings, "MQTTADMIN_OUTBOUND_ALLOW", ())
    if isinstance(value, str):
        value = value.split(",")
    return _parsed(tuple(value))


def _normal_name(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if any(address in network for network in NAT64_NETWORKS) or (
        packed >> 32 == 0 and packed > 1
    ):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def _forms_of(address: IPAddress) -> list[IPAddress]:
    """The address, and the IPv4 address inside it if it is an IPv6 wrapper."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket, nothing more.
            return [address.ipv4_mapped]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return [address, embedded]
    return [address]


def address_is_public(address: IPAddress) -> bool:
    """Whether the default policy lets a request reach `address`."""
    for candidate in _forms_of(address):
        if (
            not candidate.is_global
            or candidate.is_multicast
            or candidate.is_reserved
            or any(
                candidate in network
                for network in BLOCKED_NETWORKS
                if network.version == candidate.version
            )
        ):
            return False
    return True


def allowed(host: str, address: IPAddress, allow: OutboundAllow | None = None) -> bool:
    """Whether a connection to `address`, reached as `host`, is allowed."""
    allow = current_allow() if allow is None else allow
    return (
        allow.allows_name(host)
        or allow.allows_address(address)
        or address_is_public(address)
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host names without DNS: IPv4 in any form inet_aton reads
    (2130706433, 0x7f.0.0.1, 0177.1), IPv6 (zone ids dropped); else None."""
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if NUMERIC_HOST.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def url_error(url: str) -> str | None:
    """Why saving `url` is refused, for hosts known without DNS (literal addresses,
    localhost); None otherwise. The connect-time check stays the guarantee."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None  # the URL's own validation says what is wrong
    if not host:
        return None
    allow = current_allow()
    if allow.allows_name(host):
        return None
    name = _normal_name(host)
    address = literal_address(name)
    if address is None and (name in LOOPBACK_NAMES or name.endswith(".localhost")):
        address = ipaddress.ip_address("127.0.0.1")
    if address is not None and not allowed(host, address, allow):
        return blocked_message(host)
    return None


def resolve_checked(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, once; raises OutboundBlocked unless the
    policy allows all of them (a name with one internal address is refused whole)."""
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(
                f"host name {host!r} not resolved: {exc}"
            ) from None
        addresses = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    allow = current_allow()
    for address in addresses:
        if not allowed(host, address, allow):
            raise OutboundBlocked(blocked_message(host))
    return addresses


class PolicyNetworkBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy allows.

    The address connected to is the address checked: the host is resolved here
    once and the inner backend gets the literal address (no second lookup).
    """

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port)
        options: Sequence[Any] = list(socket_options or ())
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # resolve_checked never returns an empty list
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise OutboundBlocked(_("Unix sockets are blocked by the outbound policy."))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def http_client(
    ssl_context: ssl.SSLContext | None = None, **kwargs: Any
) -> httpx.Client:
    """An httpx client whose every connection goes through the outbound policy.

    TLS verifies the URL's host name (sent as SNI) against `ssl_context` (default:
    the certifi bundle, as httpx does), whatever address it was dialled on.

    Redirects are not followed (a redirect to an internal address would be
    checked anyway, but following one repeats a request the operator did not
    write). Proxies from the environment are not used: through a proxy the policy
    would see the proxy's address, not the destination's.
    """
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no argument for the network backend: the pool it would build,
    # with ours. tests/security/test_outbound_policy.py fails if this stops working.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context or httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=PolicyNetworkBackend(),
    )
    kwargs.setdefault("follow_redirects", False)
    return httpx.Client(transport=transport, trust_env=False, **kwargs)


def blocked_cause(exc: BaseException) -> OutboundBlocked | None:
    """The policy refusal behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OutboundBlocked):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
