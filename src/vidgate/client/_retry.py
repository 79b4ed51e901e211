"""When to send a request again, and how long to wait first. Pure decisions, no I/O.

Rules:

* Status reads, cancel, model listing and downloads are idempotent: 408, 429, 5xx and
  connection errors are retried with exponential backoff and jitter; ``Retry-After`` wins
  over the backoff when the server sends it.
* A submit is retried only when it carries an idempotency key (the server then answers a
  repeat with the first response instead of starting a second, charged run). Without a
  key, it is re-sent only when it certainly never reached the server (connection refused,
  connect timeout).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from vidgate.client._errors import (
    APIConnectionError,
    APIStatusError,
    UnexpectedResponseError,
    VidgateError,
)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RetryMode(Enum):
    IDEMPOTENT = "idempotent"
    """Safe to repeat: reads, cancel, a submit with an idempotency key."""
    UNSENT_ONLY = "unsent_only"
    """A submit without a key: repeat only what never reached the server."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the n-th retry waits between half and all of
    ``min(cap_s, base_s * 2**n)``, so a crowd of clients spreads out but none retries at once."""

    base_s: float = 0.5
    cap_s: float = 10.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt))
        return ceiling / 2 + rand() * ceiling / 2


DEFAULT_BACKOFF = Backoff()


def is_retryable(error: VidgateError, mode: RetryMode) -> bool:
    """Whether ``error`` is worth another try under ``mode`` (ignoring attempt counts)."""
    if isinstance(error, APIConnectionError):
        return mode is RetryMode.IDEMPOTENT or not error.request_sent
    if isinstance(error, APIStatusError):
        return mode is RetryMode.IDEMPOTENT and error.status_code in RETRYABLE_STATUS
    # A 2xx body we cannot read (a proxy's HTML page) is passing noise for a read.
    return isinstance(error, UnexpectedResponseError) and mode is RetryMode.IDEMPOTENT


def retry_delay(
    error: VidgateError,
    attempt: int,
    *,
    mode: RetryMode,
    max_retries: int,
    backoff: Backoff = DEFAULT_BACKOFF,
    max_retry_after_s: float = 60.0,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or None to give up and raise.

    A ``Retry-After`` longer than ``max_retry_after_s`` is not slept through: the error is
    raised so the caller can decide (it carries ``retry_after_s``).
    """
    if attempt >= max_retries or not is_retryable(error, mode):
        return None
    retry_after = error.retry_after_s if isinstance(error, APIStatusError) else None
    if retry_after is not None:
        return None if retry_after > max_retry_after_s else retry_after
    return backoff.delay(attempt, rand)
