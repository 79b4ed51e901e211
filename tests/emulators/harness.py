"""Run provider emulators as real HTTP servers on loopback, with scripted faults.

An emulator is an ASGI app. :class:`LoopbackServer` serves it with uvicorn in a background
thread on ``127.0.0.1`` and a free port. :class:`Faults` lets a test script what the next
requests of one *operation* (``"submit"``, ``"status"``, ``"result"``, ``"cancel"``,
``"download"``...) answer instead of the normal reply: an HTTP error with headers, a body that
is not JSON, a delay longer than the client's timeout (a hang), a dropped connection, a
connection reset (TCP RST), or a body cut off half-way.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass(frozen=True)
class Fault:
    """One scripted answer. ``kind`` is ``"status"``, ``"malformed"``, ``"delay"``, ``"drop"``,
    ``"reset"`` or ``"truncated"``."""

    kind: str = "status"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0


class DroppedResponse(Response):
    """Starts a response that promises a body, then fails: the server closes the socket.

    The client sees the connection end without a complete answer, as when a provider's
    load balancer drops it.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise ConnectionAbortedError("emulated dropped connection")


TRANSPORT = "vidgate.test.transport"
"""Where :class:`LoopbackServer` puts the connection's asyncio transport in each scope."""


class ResetResponse(Response):
    """Resets the connection (TCP RST) without answering, as a crashing proxy does."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        transport = scope[TRANSPORT]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        raise ConnectionResetError("emulated connection reset")


class TruncatedResponse(Response):
    """Promises a JSON body, sends its first half, then closes the connection."""

    def __init__(self, body: str) -> None:
        super().__init__(status_code=200)
        self._whole = body.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._whole)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = self._whole[: len(self._whole) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise ConnectionAbortedError("emulated truncated body")


class Faults:
    """Per-operation FIFO of faults, consumed one per matching request. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )

    def push(self, operation: str, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._queues[operation].extend([fault] * times)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()

    def take(self, operation: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(operation)
            return queue.popleft() if queue else None

    async def apply(self, operation: str) -> Response | None:
        """The scripted response for this request, or ``None`` to answer normally."""
        fault = self.take(operation)
        if fault is None:
            return None
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "drop":
            return DroppedResponse()
        if fault.kind == "reset":
            return ResetResponse()
        if fault.kind == "truncated":
            body = '{"status": "IN_QUEUE", "request_id": "0123456789abcdef"}'
            return TruncatedResponse(body if fault.body is None else str(fault.body))
        if fault.kind == "malformed":
            return Response(
                "<html>502 Bad Gateway</html>" if fault.body is None else str(fault.body),
                status_code=fault.status if fault.status != 503 else 200,
                media_type="application/json",
                headers=fault.headers,
            )
        payload = fault.body if fault.body is not None else {"error": f"emulated {fault.status}"}
        return JSONResponse(payload, status_code=fault.status, headers=fault.headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1 in a daemon thread. Use as a context manager."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            _exposing_transport(app),
            host="127.0.0.1",
            port=self.port,
            log_level="critical",
            lifespan="off",
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exposing_transport(app: Any) -> Any:
    """``app``, with each scope holding its connection's transport (for
    :class:`ResetResponse`): uvicorn's ``send`` is a method of an object that has it."""

    async def exposing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        await app(scope, receive, send)

    return exposing


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"
