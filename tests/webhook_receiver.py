"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every request
(headers and body bytes as sent) and answers as a test scripts it, per path and per attempt.

An answer is an HTTP status (``200``, ``410``, ``503``...), :data:`HANG` (hold the request
without answering until the receiver stops, so the sender's timeout fires) or :data:`RESET`
(close the socket without answering a byte; with ``SO_LINGER`` 0 the client sees a reset).
Each path has a queue of answers, used one per request; when it is empty the path's default
answers (``200`` unless set). The server is :class:`http.server.ThreadingHTTPServer`: a
request that hangs holds one thread, never the others.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"
RESET = "reset"
Answer = int | str


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what the receiver did with it."""

    at: float
    """``time.time()`` when its body had been read."""
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    answer: Answer

    @property
    def accepted(self) -> bool:
        return isinstance(self.answer, int) and 200 <= self.answer < 300

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class WebhookReceiver:
    """Use as a context manager; :attr:`url` gives a path's absolute URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._script: dict[str, collections.deque[Answer]] = collections.defaultdict(
            collections.deque
        )
        self._defaults: dict[str, Answer] = {}
        self._received: list[Received] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, answers: Iterable[Answer]) -> None:
        """Answer the next requests to ``path`` with these, in order."""
        with self._lock:
            self._script[path].extend(answers)

    def default(self, path: str, answer: Answer) -> None:
        """Answer requests to ``path`` with this once its script is used up."""
        with self._lock:
            self._defaults[path] = answer

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(
        self,
        condition: Callable[[list[Received]], bool],
        timeout: float = 30,
        path: str | None = None,
    ) -> list[Received]:
        """Block until ``condition`` holds for the requests (to ``path``) so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = [r for r in self._received if path is None or r.path == path]
                if condition(got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout} s; got {got}")
                self._changed.wait(left)

    def _next_answer(self, path: str) -> Answer:
        with self._lock:
            queue = self._script.get(path)
            if queue:
                return queue.popleft()
            return self._defaults.get(path, 200)

    def _record(self, item: Received) -> None:
        with self._changed:
            self._received.append(item)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                path = self.path
                answer = receiver._next_answer(path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Received(time.time(), path, headers, body, answer))
                if answer == HANG:
                    receiver._stopping.wait(120)
                    self.close_connection = True
                    return
                if answer == RESET:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                assert isinstance(answer, int)
                reply = b'{"ok":true}' if 200 <= answer < 300 else b'{"ok":false}'
                self.send_response(answer)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        return Handler

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
