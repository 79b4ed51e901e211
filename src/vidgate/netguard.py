"""Refusing outbound requests to addresses inside the network (SSRF): loopback, private
ranges, link-local (cloud metadata), and every other address that is not globally routable.

Used wherever vidgate fetches or sends to a URL a client chose: ``imageUrl`` and webhooks.
"""

from __future__ import annotations

import asyncio
import ipaddress

import httpx


class UnsafeTarget(Exception):
    """The URL's host is not a public address (or does not resolve)."""


async def check_public(url: str) -> None:
    """Raise :class:`UnsafeTarget` unless every address the URL's host resolves to is a
    public one. The message says what is wrong, for the person who sent the URL."""
    try:
        parsed = httpx.URL(url)
        host = parsed.host
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) is a ValueError
        raise UnsafeTarget(f"is not a valid URL ({exc})") from None
    if not host:
        raise UnsafeTarget("has no host name")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parsed.port or (443 if parsed.scheme == "https" else 80)
        )
    except (OSError, ValueError):  # ValueError: a host name IDNA cannot encode
        raise UnsafeTarget(f"has a host name that does not resolve ({host})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise UnsafeTarget(
                f"points to {address}, which is not a public address (loopback, private, "
                "link-local and metadata addresses are refused)"
            )
