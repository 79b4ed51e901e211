"""Following a run over server-sent events, as a state machine with no I/O.

``Client.stream_status`` and ``AsyncClient.stream_status`` drive a :class:`Streamer`: ask
it for the next connection (:meth:`Streamer.next_connection`), feed it the bytes that
arrive (:meth:`Streamer.feed`), report each status read from an event
(:meth:`Streamer.on_status`), ask after every chunk whether to cut the connection
(:meth:`Streamer.cut`), and report how the connection ended (:meth:`Streamer.on_end`,
:meth:`Streamer.on_error`), sleeping for the seconds they return. The streamer holds the
rules:

* **The deadline always holds.** A connection's timeouts are cut to the time left; once
  the deadline is nearer than the read timeout the connection was opened with, the next
  chunk (an event or a keep-alive) ends it and a new one opens with the shorter timeout.
  When no time is left, :class:`WaitTimeout` is raised.
* **Reconnects resume.** Every new connection sends ``Last-Event-ID`` with the id of the
  last status read, so the server sends only newer states.
* **Errors back off.** A dropped connection, a 5xx, 408 or an unreadable event reconnect
  with exponential backoff and jitter (never sooner than the server's ``retry:``); a
  429 waits its ``Retry-After``; a connection that brought a new state reconnects at
  the server's ``retry:`` (at once without one). Other errors (401, 404...) end the
  stream.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from vidgate.client._errors import (
    APIStatusError,
    UnexpectedResponseError,
    VidgateError,
    WaitTimeout,
)
from vidgate.client._retry import DEFAULT_BACKOFF, Backoff, RetryMode, is_retryable
from vidgate.client._sse import ServerSentEvent, SSEDecoder
from vidgate.client._types import VideoStatus

KEEP_ALIVE_S = 15.0
"""How often the server sends a keep-alive comment on a quiet stream."""
READ_TIMEOUT_S = 3 * KEEP_ALIVE_S
"""No byte for this long (three keep-alives missed): the connection is dead."""
CUT_SLACK_S = 0.5
"""A read may end this much past the deadline before the connection is cut for it."""


class NotAnEventStream(UnexpectedResponseError):
    """The server answered the stream route with something other than an event stream."""


def offers_no_stream(error: VidgateError) -> bool:
    """Whether ``error``, met on the stream route of a run known to exist, means the server
    has no such route: a 404 or 405, or a 2xx that is not an event stream."""
    if isinstance(error, NotAnEventStream):
        return True
    return isinstance(error, APIStatusError) and error.status_code in (404, 405)


@dataclass(frozen=True)
class StreamStep:
    """One connection to open: the id to resume after, and its timeouts."""

    last_event_id: str | None
    timeout_s: float
    read_timeout_s: float


class Streamer:
    """The rules of one stream. Not thread-safe; one per stream."""

    def __init__(
        self,
        run_id: str,
        *,
        timeout_s: float,
        request_timeout_s: float,
        deadline: float | None = None,
        last: VideoStatus | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not run_id:
            raise ValueError("run_id is required")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError("timeout_s must be a positive number of seconds")
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.backoff = backoff
        self.clock = clock
        self.rand = rand
        self.deadline = clock() + timeout_s if deadline is None else deadline
        #: The last status read, if any.
        self.last = last
        #: The last error since the last new state, if any.
        self.last_error: VidgateError | None = None
        #: The id of the last event read: sent as ``Last-Event-ID`` on a reconnect.
        self.last_event_id: str | None = None
        #: The server's ``retry:``, in seconds.
        self.retry_s: float | None = None
        self.failures = 0
        self._decoder = SSEDecoder()
        self._read_timeout = 0.0
        self._progressed = False
        self._cut = False

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def _timeout(self) -> WaitTimeout:
        return WaitTimeout(self.run_id, self.timeout_s, self.last)

    def next_connection(self) -> StreamStep:
        """The next connection to open; raises :class:`WaitTimeout` past the deadline."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self._timeout() from self.last_error
        self._decoder = SSEDecoder(last_event_id=self.last_event_id)
        self._read_timeout = min(READ_TIMEOUT_S, remaining)
        self._progressed = self._cut = False
        return StreamStep(
            last_event_id=self.last_event_id,
            timeout_s=min(self.request_timeout_s, remaining),
            read_timeout_s=self._read_timeout,
        )

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that ``chunk`` completes (keep-alives are not events)."""
        events = self._decoder.feed(chunk)
        if self._decoder.retry_ms is not None:
            self.retry_s = self._decoder.retry_ms / 1000
        return events

    def on_status(self, status: VideoStatus, event_id: str | None) -> bool:
        """Record the status an event carried; True when it is terminal (the stream ends)."""
        if event_id is None or event_id != self.last_event_id:
            self._progressed = True
            self.failures, self.last_error = 0, None
        if event_id is not None:
            self.last_event_id = event_id
        self.last = status
        return status.is_terminal

    def cut(self) -> bool:
        """After each chunk: raises :class:`WaitTimeout` past the deadline; True when this
        connection could block past it and must be replaced by a shorter one."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self._timeout() from self.last_error
        self._cut = self._read_timeout - remaining > CUT_SLACK_S
        return self._cut

    def _delay(self, retry_after: float | None = None) -> float:
        if retry_after is not None:
            delay = retry_after
        elif self.failures == 0:
            delay = self.retry_s or 0.0
        else:
            delay = max(self.retry_s or 0.0, self.backoff.delay(self.failures - 1, self.rand))
        return max(0.0, min(delay, self.remaining()))

    def _count(self) -> None:
        if self._progressed:
            self.failures = 0
        else:
            self.failures += 1

    def on_end(self) -> float:
        """The connection ended before a terminal status (the server closed it, or it was
        cut): the seconds to sleep before the next one."""
        if self._cut:
            return 0.0
        self._count()
        return self._delay()

    def on_error(self, error: VidgateError) -> float | None:
        """The connection failed. None: the error ends the stream (re-raise it). Otherwise
        the seconds to sleep before the next connection."""
        if isinstance(error, NotAnEventStream) or not is_retryable(error, RetryMode.IDEMPOTENT):
            return None
        self._count()
        self.last_error = error
        retry_after = error.retry_after_s if isinstance(error, APIStatusError) else None
        return self._delay(retry_after)
