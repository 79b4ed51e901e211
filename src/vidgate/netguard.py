"""Refusing outbound requests to addresses inside the network (SSRF): loopback, private
ranges, link-local (cloud metadata), and every other address that is not globally routable.

Used wherever vidgate fetches or sends to a URL that someone other than the operator chose:
``imageUrl`` and webhook URLs (checked at submit, and again when fetched or sent), and
provider output URLs outside the provider's own origin.

A check alone is not enough: a name that resolved to a public address when it was checked
can resolve to ``127.0.0.1`` a moment later, when the HTTP client resolves it again (DNS
rebinding). :class:`GuardedTransport` closes that gap: it resolves a name once, checks
every address, and connects to an address it checked, while the request keeps the name
(``Host`` header, TLS server name and certificate check).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[str]]]
"""A resolver: the addresses a host name has (for a port), as strings. Tests inject one."""
Permit = Callable[[Address], bool]
"""Which addresses may be connected to: :func:`is_public`, unless a test says otherwise."""

RESOLVE_TIMEOUT_S = 5.0
"""The longest a check waits for DNS when the caller gives no timeout of its own."""
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: inside one network
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


class UnsafeTarget(Exception):
    """The URL's host is not a public address (or does not resolve)."""


class Unresolved(UnsafeTarget):
    """The URL's host name did not resolve (now: it may later)."""


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host``, in its order, each once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: Address) -> bool:
    """Whether an address is globally routable. IPv4 addresses written as IPv6 (mapped,
    IPv4-compatible, 6to4 or NAT64) are judged as the IPv4 address they carry; local-use
    NAT64 and site-local IPv6 are never public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address in _NAT64 or address in _IPV4_COMPATIBLE:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in _LOCAL_NAT64 or address.is_site_local:
            return False
    return address.is_global


async def public_addresses(
    host: str, port: int, resolve: Resolve = system_resolve, permit: Permit | None = None
) -> list[Address]:
    """Every address ``host`` has, once resolved; :class:`UnsafeTarget` unless all are
    public (or permitted). An address written as the host is not resolved."""
    permit = permit or is_public
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            found = [ipaddress.ip_address(a.split("%")[0]) for a in await resolve(host, port)]
        except (OSError, UnicodeError, ValueError):  # ValueError: a name IDNA cannot encode
            raise Unresolved(f"has a host name that does not resolve ({host})") from None
        if not found:
            raise Unresolved(f"has a host name that does not resolve ({host})")
    for address in found:
        if not permit(address):
            raise UnsafeTarget(
                f"points to {address}, which is not a public address (loopback, private, "
                "link-local and metadata addresses are refused)"
            )
    return found


async def check_public(
    url: str, *, resolve: Resolve = system_resolve, timeout_s: float = RESOLVE_TIMEOUT_S
) -> None:
    """Raise :class:`UnsafeTarget` unless the URL is http(s) and every address its host
    resolves to is a public one. The message says what is wrong, for the person who sent
    the URL."""
    try:
        parsed = httpx.URL(url)
        host = parsed.host
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) is a ValueError
        raise UnsafeTarget(f"is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeTarget("is not an http or https URL")
    if not host:
        raise UnsafeTarget("has no host name")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout_s):
            await public_addresses(host, port, resolve)
    except TimeoutError:
        raise Unresolved(
            f"has a host name that did not resolve within {timeout_s:g} s ({host})"
        ) from None


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, except that a connection is made only to a public address, and
    to the very address that was checked: the name is resolved here, once per connection."""

    def __init__(self, resolve: Resolve = system_resolve, permit: Permit = is_public) -> None:
        self._resolve = resolve
        self._permit = permit
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await public_addresses(host, port, self._resolve, self._permit)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"{host} did not resolve within {timeout} s") from None
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeTarget("is a local socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a :class:`GuardedNetwork`. A request to an address inside the
    network raises :class:`UnsafeTarget` (not an ``httpx`` error) before anything is sent.
    Proxies are not used: a proxy would resolve the name itself."""

    def __init__(
        self,
        *,
        resolve: Resolve = system_resolve,
        permit: Permit = is_public,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 (immutable)
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        tls = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        super().__init__(verify=tls, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetwork(resolve, permit),
        )
