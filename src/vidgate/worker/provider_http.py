"""The worker's HTTP to providers: at most ``remote_concurrency`` connections, in small pools.

httpcore's connection pool looks at every connection it holds each time a request starts or
ends (a system call per idle connection, to see whether the server closed it). One pool of
200 connections therefore spends milliseconds of CPU on every request: that, not the
network, was what bounded one worker's polls. :class:`ShardedTransport` spreads the same
number of connections over pools of :data:`SHARD_CONNECTIONS`, and sends each request to
the pool with the fewest requests under way.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable

import httpx

from vidgate.backends._answers import origin
from vidgate.logs import event
from vidgate.netguard import GuardedTransport, Resolve, system_resolve

SHARD_CONNECTIONS = 4


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, *, per_shard: int = SHARD_CONNECTIONS) -> None:
        shards = max(1, math.ceil(connections / per_shard))
        sizes = [connections // shards + (i < connections % shards) for i in range(shards)]
        self.connections = sum(sizes)
        """The most connections open at once, over all pools."""
        tls = httpx.create_ssl_context()  # one for all pools: each costs milliseconds to make
        self._shards = [
            httpx.AsyncHTTPTransport(
                verify=tls,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            for size in sizes
        ]
        self._active = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = min(range(len(self._shards)), key=self._active.__getitem__)
        self._active[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            self._active[shard] -= 1
            raise
        response.stream = _Counted(response.stream, lambda: self._done(shard))
        return response

    def _done(self, shard: int) -> None:
        self._active[shard] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that tells its pool once it is closed (read to the end or not)."""

    def __init__(
        self, stream: httpx.AsyncByteStream | httpx.SyncByteStream, done: Callable[[], None]
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._done is not None:
                self._done()
                self._done = None


class OutsideGuard(httpx.AsyncBaseTransport):
    """Requests to a provider's own origin (its configured ``base_url``) go to ``inner``;
    a request anywhere else (an output URL on a CDN, a redirect) goes through a
    :class:`~vidgate.netguard.GuardedTransport`, which connects only to public addresses:
    a provider's answer cannot send the worker to ``127.0.0.1`` or a metadata address."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        provider_roots: Iterable[str],
        *,
        resolve: Resolve = system_resolve,
        connections: int = SHARD_CONNECTIONS,
    ) -> None:
        self._inner = inner
        self._origins = {o for o in map(origin, provider_roots) if o is not None}
        limits = httpx.Limits(max_connections=connections)
        self._outside = GuardedTransport(resolve=resolve, limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inside = origin(str(request.url)) in self._origins
        transport = self._inner if inside else self._outside
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._outside.aclose()


log = logging.getLogger("vidgate.worker")

PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def provider_client(
    connections: int,
    provider_roots: Iterable[str] | None,
    *,
    resolve: Resolve = system_resolve,
) -> httpx.AsyncClient:
    """The client every remote backend of a worker shares. Requests outside the origins of
    ``provider_roots`` (the providers' base URLs) may go to public addresses only; with
    ``None``, anywhere (``[worker] allow_private_output_hosts``). Behind a proxy (the usual
    environment variables), httpx's own client, which honours them, with one pool: the
    proxy, which resolves the names, is then where outbound requests are restricted."""
    if any(os.environ.get(name) for name in PROXY_ENV):
        if provider_roots is not None:
            event(
                log,
                "provider.output_guard_off",
                logging.WARNING,
                reason="an HTTP proxy is set: it resolves names, so restrict outbound "
                "traffic there; hosts in NO_PROXY are fetched unchecked",
            )
        limits = httpx.Limits(max_connections=connections)
        return httpx.AsyncClient(limits=limits, timeout=30.0)
    transport: httpx.AsyncBaseTransport = ShardedTransport(connections)
    if provider_roots is not None:
        transport = OutsideGuard(
            transport, provider_roots, resolve=resolve, connections=connections
        )
    return httpx.AsyncClient(transport=transport, timeout=30.0)
