"""Cutting off slow clients (slowloris) without stalling anyone else.

Each connection is served by its own coroutine, so a slow client delays nobody else; what
it can do is hold a connection (a file descriptor, some memory) open for as long as it
likes, and enough of them exhaust the server. Two limits end that:

* **headers**: a request's headers must arrive in full within ``header_timeout_s`` of the
  connection opening, or of the first byte after the previous answer. uvicorn has no such
  limit (its ``timeout_keep_alive`` only closes a connection idle *between* requests, and
  any byte resets it), so :func:`protocol_with_header_timeout` adds one to its httptools
  protocol. A late client is disconnected, without an answer.
* **bodies**: a request body must arrive within ``body_timeout_s`` of waiting for it
  (the time the app spends waiting for the client's bytes, summed). :func:`timed_receive`
  wraps the ASGI ``receive``; past the limit the request is answered ``408`` in the
  route's error shape, with ``Connection: close``.

Bytes that trickle in after an answer (a body the app never read) count as the next
request's headers, so they are cut off too.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import Message, Receive
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vidgate.server.errors import ApiError


def timed_receive(receive: Receive, budget_s: float) -> Receive:
    """``receive``, raising a 408 :class:`ApiError` once waiting for the request body has
    taken ``budget_s`` in all. Once the body is complete it is ``receive`` itself (a
    long-poll waiting for the client to go away is not timed)."""
    left = budget_s
    complete = False

    async def timed() -> Message:
        nonlocal left, complete
        if complete:
            return await receive()
        started = time.monotonic()
        try:
            async with asyncio.timeout(left):
                message = await receive()
        except TimeoutError:
            raise ApiError(
                408,
                f"the request body did not arrive within {budget_s:g} s; send the whole "
                "body without pausing",
                headers={"Connection": "close"},
            ) from None
        left -= time.monotonic() - started
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return timed


class _HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on reading each request's headers."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # the first byte of a request (or of a body nobody reads)
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._arm()  # a request pipelined behind one still being answered
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        """Start the clock, unless it runs already."""
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_with_header_timeout(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.run(http=...)``: httptools, with headers that must
    arrive within ``header_timeout_s``."""
    return type(
        "HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s}
    )
