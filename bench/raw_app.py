"""The server's own ceiling for the status routes: a raw ASGI callable that answers every
request with the same status body nginx serves (read at start from the file named by
``VIDGATE_BENCH_BODY``). No framework, no key, no read: what is left of a request's cost
is the server's and the event loop's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_BODY = Path(os.environ["VIDGATE_BENCH_BODY"]).read_bytes()
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))],
}
_BODY_MESSAGE = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY_MESSAGE)
