"""``X-Request-ID``: taken from the request when it is usable, made up otherwise, echoed on
every answer (the fast path's, the routes', errors and crashes alike) and added to every
log line of the request (:data:`vidgate.logs.request_id`).

A usable id is 1 to :data:`MAX_LENGTH` printable ASCII characters without spaces (what
proxies and tracing systems send: UUIDs, hex, base64). Another value is not refused, since
a request must not fail over a tracing header: it is replaced by a fresh id, which the
answer shows."""

from __future__ import annotations

import os
import re

from starlette.types import Message, Send

HEADER = b"x-request-id"
MAX_LENGTH = 128
_USABLE = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)


def request_id_of(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's id: its own ``X-Request-ID`` if usable, else a new one."""
    for name, value in headers:
        if name == HEADER:
            if _USABLE.fullmatch(value):
                return value
            break
    return os.urandom(16).hex().encode()  # a quarter of uuid4's cost


def echoing(send: Send, request_id: bytes) -> Send:
    """``send``, with ``X-Request-ID`` added to the answer's headers."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), (HEADER, request_id)]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_id
