"""Waiting for a run to finish, as a state machine with no I/O.

``Client.wait_for_video`` and ``AsyncClient.wait_for_video`` drive a :class:`Waiter`:
ask it for the next poll (:meth:`Waiter.next_step`), send that poll, report the answer
(:meth:`Waiter.on_status`) or the error (:meth:`Waiter.on_error`), sleep for the seconds
it returns. The waiter holds the rules:

* **The deadline always holds.** Every sleep, every long-poll hold and every request
  timeout is cut to the time left; when none is left, :class:`WaitTimeout` is raised.
* **Long-poll.** The first poll reads the current state at once; every later one asks
  the server to hold the request (``waitSeconds``, at most 30 s, never past the
  deadline), so a server that supports it answers as soon as the run changes, and the
  next poll goes out at once. A vidgate server answers at every event of the run,
  progress included, and says so with the ``Vidgate-Long-Poll`` header; the waiter then
  always asks again at once. A server that ignores the
  parameter answers at once: the waiter then polls every ``poll_interval_s`` (or at the
  server's ``Retry-After``), looking again at once only right after a status change.
* **Errors back off.** 5xx, 408 and broken connections are retried with exponential
  backoff and jitter; a 429 waits its ``Retry-After``. Other errors (401, 404...) end the
  wait at once.
* **Unknown statuses are not terminal**: the wait goes on, within the deadline.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from vidgate.client._errors import (
    APIStatusError,
    GenerationCancelled,
    GenerationFailed,
    VidgateError,
    WaitTimeout,
)
from vidgate.client._retry import DEFAULT_BACKOFF, Backoff, RetryMode, is_retryable
from vidgate.client._types import RunStatus, VideoStatus

LONG_POLL_S = 30
"""The longest hold asked of the server per poll (the API allows 0-60)."""
DEFAULT_POLL_INTERVAL_S = 2.0
"""Poll spacing when the server neither holds requests nor suggests an interval."""
MAX_SERVER_INTERVAL_S = 60.0
"""A status response's ``Retry-After`` beyond this is read as this."""
HELD_FRACTION = 0.8
"""An answer that took this share of the hold asked for was held by the server."""
MAX_QUICK_POLLS = 3
"""At most this many polls in a row are sent at once because the status changed."""
DEADLINE_MARGIN_S = 0.5
"""Ask the server to answer this long before the deadline, to see a last status."""


@dataclass(frozen=True)
class PollStep:
    """One poll to send: the hold to ask for (0: answer at once) and the request timeout."""

    wait_seconds: int
    timeout_s: float


class Waiter:
    """The rules of one wait. Not thread-safe; one per wait."""

    def __init__(
        self,
        run_id: str,
        *,
        timeout_s: float,
        request_timeout_s: float,
        poll_interval_s: float | None = None,
        long_poll_s: int = LONG_POLL_S,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError("timeout_s must be a positive number of seconds")
        if poll_interval_s is not None and not poll_interval_s >= 0:
            raise ValueError("poll_interval_s must be zero or more seconds")
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.poll_interval_s = poll_interval_s
        self.long_poll_s = max(0, min(60, long_poll_s))
        self.backoff = backoff
        self.clock = clock
        self.rand = rand
        self.deadline = clock() + timeout_s
        #: The last status seen, if any.
        self.last: VideoStatus | None = None
        #: The last error seen since the last good answer, if any.
        self.last_error: VidgateError | None = None
        self.failures = 0
        self._quick = 0
        self._sent_at = self.deadline
        self._asked = 0

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def next_step(self) -> PollStep:
        """The next poll to send; raises :class:`WaitTimeout` when the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            raise WaitTimeout(self.run_id, self.timeout_s, self.last) from self.last_error
        hold = int(min(self.long_poll_s, max(0.0, remaining - DEADLINE_MARGIN_S)))
        if self.last is None and self.last_error is None:
            hold = 0  # the first poll reads the current state at once
        self._asked = hold
        self._sent_at = self.clock()
        return PollStep(wait_seconds=hold, timeout_s=min(hold + self.request_timeout_s, remaining))

    def interval(self, status: VideoStatus) -> float:
        """Poll spacing when the server does not hold requests: the caller's interval, but
        never faster than the server's ``Retry-After``; else the server's; else a default."""
        server = status.retry_after_s
        if server is not None:
            server = min(server, MAX_SERVER_INTERVAL_S)
        if self.poll_interval_s is not None:
            return max(self.poll_interval_s, server or 0.0)
        return server if server is not None else DEFAULT_POLL_INTERVAL_S

    def on_status(self, status: VideoStatus, *, held: bool = False) -> float | None:
        """Record an answer. None: the run is terminal (see :func:`finish`). Otherwise the
        seconds to sleep before the next poll. ``held``: the server says it held the
        request until the run's next event (it may answer early, on progress)."""
        held_by_server, waited = held, self.clock() - self._sent_at
        previous, self.last = self.last, status
        self.failures, self.last_error = 0, None
        if status.is_terminal:
            return None
        changed = previous is None or previous.status is not status.status
        if self._asked > 0 and (held_by_server or waited >= self._asked * HELD_FRACTION):
            # The server held the request for the hold asked: it long-polls, so asking
            # again at once costs nothing and hears of the next change as it happens.
            delay = 0.0
        elif changed and self._quick < MAX_QUICK_POLLS:
            # A change, whether a long-poll answering early or a plain poll: the run is
            # moving, so look again at once (bounded, in case a server flaps).
            self._quick += 1
            delay = 0.0
        else:
            if not changed:
                self._quick = 0
            delay = max(0.0, self.interval(status) - waited)
        return max(0.0, min(delay, self.remaining()))

    def on_error(self, error: VidgateError) -> float | None:
        """Record a failed poll. None: the error ends the wait (re-raise it). Otherwise the
        seconds to sleep before the next poll."""
        if not is_retryable(error, RetryMode.IDEMPOTENT):
            return None
        self.failures += 1
        self.last_error = error
        retry_after = error.retry_after_s if isinstance(error, APIStatusError) else None
        if retry_after is None:
            delay = self.backoff.delay(self.failures - 1, self.rand)
        else:
            delay = retry_after
        return max(0.0, min(delay, self.remaining()))


def finish(status: VideoStatus) -> VideoStatus:
    """The end of a wait: the status when COMPLETED, else the matching exception."""
    if status.status is RunStatus.FAILED:
        raise GenerationFailed(status)
    if status.status is RunStatus.CANCELLED:
        raise GenerationCancelled(status)
    return status
