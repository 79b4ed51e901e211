"""Every error the SDK raises, under one root: :class:`VidgateError`.

httpx errors are translated once, where a request is sent, and chained with ``from``;
nothing else from httpx escapes the SDK.

::

    VidgateError
    ├── APIConnectionError          the server could not be reached, or the connection broke
    │   └── APITimeoutError         ... or a request took longer than ``timeout_s``
    ├── APIStatusError              the server answered with an error status
    │   ├── InvalidRequestError     400/409/413/422: the request is wrong
    │   │   └── ContentPolicyError  400 CONTENT_POLICY_VIOLATION: the prompt was refused
    │   ├── AuthenticationError     401: missing or unknown key
    │   │   └── PermissionDeniedError  403
    │   ├── NotFoundError           404: unknown run (or another key's run)
    │   └── RateLimitError          429, with ``retry_after_s``
    ├── UnexpectedResponseError     a 2xx answer the SDK cannot read
    ├── GenerationFailed            the run ended FAILED (``error``, ``is_nsfw``, ...)
    ├── GenerationCancelled         the run ended CANCELLED
    ├── WaitTimeout                 the wait's deadline passed first (also a TimeoutError)
    ├── VideoNotReady               a download was asked for a run with no video yet
    └── WebhookVerificationError    a webhook's signature, headers, secret or body is not valid
"""

from __future__ import annotations

from typing import Any

from vidgate.client._types import VideoStatus


class VidgateError(Exception):
    """The vidgate SDK failed."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        super().__init__(self.message)


class APIConnectionError(VidgateError):
    """Could not reach the server, or the connection broke before a full answer arrived."""

    def __init__(self, message: str | None = None, *, request_sent: bool = True) -> None:
        super().__init__(message)
        #: False when the request certainly never reached the server (connection refused,
        #: connect timeout): then even a submit without an idempotency key may be re-sent.
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(VidgateError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        error_type: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: The parsed JSON body (or the text, when it was not JSON).
        self.body = body
        #: The ``X-Request-ID`` response header, for support requests.
        self.request_id = request_id
        #: ``error.type`` from the submit envelope (``RATE_LIMITED``, ...), when present.
        self.error_type = error_type
        #: The ``Retry-After`` header in seconds, when present.
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status_code})"


class InvalidRequestError(APIStatusError):
    """The request is not valid."""


class ContentPolicyError(InvalidRequestError):
    """The prompt was refused by the content policy."""


class AuthenticationError(APIStatusError):
    """The API key is missing or not valid."""


class PermissionDeniedError(AuthenticationError):
    """The API key may not do this."""


class NotFoundError(APIStatusError):
    """Not found."""


class RateLimitError(APIStatusError):
    """Rate limited: slow down."""


class UnexpectedResponseError(VidgateError):
    """The server's answer could not be understood."""


class _RunEnded(VidgateError):
    def __init__(self, message: str | None, status: VideoStatus) -> None:
        super().__init__(message)
        #: The terminal status the run ended with.
        self.status = status
        self.run_id = status.run_id


class GenerationFailed(_RunEnded):
    """The video could not be generated."""

    def __init__(self, status: VideoStatus) -> None:
        super().__init__(status.message, status)
        #: The technical error text, as the server sent it.
        self.error = status.error
        #: True when the run failed on a content-policy check.
        self.is_nsfw = status.is_nsfw
        #: A message meant for people, when the server sent one.
        self.user_friendly_error = status.user_friendly_error


class GenerationCancelled(_RunEnded):
    """The run was cancelled."""

    def __init__(self, status: VideoStatus) -> None:
        super().__init__(None, status)


class WaitTimeout(VidgateError, TimeoutError):
    """The run did not finish before the wait's deadline."""

    def __init__(self, run_id: str, timeout_s: float, last: VideoStatus | None) -> None:
        seen = f"; last status {last.raw_status or last.status.value}" if last else ""
        super().__init__(f"run {run_id} did not finish within {timeout_s:g} s{seen}")
        self.run_id = run_id
        self.timeout_s = timeout_s
        #: The last status seen before the deadline (None if no poll succeeded).
        self.last_status = last


class VideoNotReady(VidgateError):
    """The run has no video to download yet."""

    def __init__(self, status: VideoStatus) -> None:
        state = status.raw_status or status.status.value
        if status.is_completed:
            text = f"run {status.run_id} is COMPLETED but the server sent no video URL"
        else:
            text = f"run {status.run_id} is {state}: there is no video to download yet"
        super().__init__(text)
        self.status = status


class WebhookVerificationError(VidgateError):
    """The webhook could not be verified."""
