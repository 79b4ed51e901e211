"""What :class:`Client` and :class:`AsyncClient` share: configuration, request building and
reading answers. No I/O here; the two clients only send what this module builds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from vidgate.client._errors import (
    APIConnectionError,
    APITimeoutError,
    UnexpectedResponseError,
    VideoNotReady,
    VidgateError,
)
from vidgate.client._parse import (
    error_from_response,
    parse_retry_after,
    parse_status,
    resolve_url,
)
from vidgate.client._retry import RetryMode, retry_delay
from vidgate.client._sse import ServerSentEvent
from vidgate.client._stream import NotAnEventStream, Streamer, StreamStep
from vidgate.client._types import VideoStatus
from vidgate.client._wait import PollStep, Waiter, finish

SDK_VERSION = "0.1.0"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_WAIT_TIMEOUT_S = 600.0
ENV_BASE_URL = "VIDGATE_BASE_URL"
ENV_API_KEY = "VIDGATE_API_KEY"

SUBMIT_PATH = "/api/generate-video"
LEGACY_STATUS_PATH = "/api/generate-video/status"
UNIFIED_STATUS_PATH = "/api/video/status"
STREAM_PATH = "/api/video/status/stream"
CANCEL_PATH = "/api/generate-video/cancel"
MODELS_PATH = "/api/v1/video-models"


@dataclass(frozen=True)
class Call:
    """One API request, fully described: the clients turn it into an httpx request."""

    method: str
    url: str
    retry: RetryMode
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    read_timeout_s: float | None = None
    """The longest wait for the next byte, when it differs from ``timeout_s``."""


LONG_POLL_HEADER = "vidgate-long-poll"
"""Sent by a server that held a status request (``waitSeconds``) until the run's next event
or the end of the hold: asking again at once costs nothing."""


@dataclass(frozen=True)
class Answer:
    """A successful answer: its JSON body and the headers the SDK reads."""

    body: Any
    retry_after_s: float | None
    request_id: str | None
    long_poll: bool = False
    """The server held the request until the run's next event (``Vidgate-Long-Poll``)."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base_url`` and ``api_key`` from ``VIDGATE_BASE_URL`` and ``VIDGATE_API_KEY``.

    Used only by the ``from_env`` factories and the CLI; constructing a client never reads
    the environment.
    """
    env = os.environ if environ is None else environ
    settings = {"base_url": env.get(ENV_BASE_URL) or DEFAULT_BASE_URL}
    if env.get(ENV_API_KEY):
        settings["api_key"] = env[ENV_API_KEY]
    return settings


def normalise_base_url(base_url: str) -> str:
    """``https://host``, ``https://host/`` and ``https://host/api`` (the form the upstream
    docs use) all mean the same server; the SDK adds ``/api/...`` itself."""
    url = base_url.strip().rstrip("/")
    if not url:
        raise ValueError("base_url is required, e.g. http://127.0.0.1:8000")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    return url


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def connection_error(exc: httpx.RequestError, url: str) -> APIConnectionError:
    """Translate an httpx request error (the one place where that happens)."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request to {url} timed out ({detail})", request_sent=not unsent)
    return APIConnectionError(f"connection to {url} failed: {detail}", request_sent=not unsent)


def read_answer(response: httpx.Response) -> Answer:
    """The JSON body of a read response; raises the matching :class:`APIStatusError` for an
    error status and :class:`UnexpectedResponseError` for a 2xx that is not JSON."""
    request_id = response.headers.get("x-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
        parsed = False
    else:
        parsed = True
    if response.status_code >= 300:
        raise error_from_response(
            response.status_code, body, request_id=request_id, retry_after_s=retry_after
        )
    if not parsed or not isinstance(body, dict | list):
        raise UnexpectedResponseError(
            f"expected JSON from {response.request.url.path}, got {response.text[:80]!r}"
        )
    return Answer(
        body=body,
        retry_after_s=retry_after,
        request_id=request_id,
        long_poll=LONG_POLL_HEADER in response.headers,
    )


def is_event_stream(response: httpx.Response) -> bool:
    """Whether an answer of the stream route is the event stream itself."""
    content_type = response.headers.get("content-type", "")
    return response.status_code < 300 and content_type.startswith("text/event-stream")


def refuse_stream(response: httpx.Response) -> NoReturn:
    """Raise for an answer of the stream route that is not an event stream (its body read):
    the matching :class:`APIStatusError`, or :class:`NotAnEventStream` for a 2xx."""
    if response.status_code >= 300:
        read_answer(response)  # raises
    content_type = response.headers.get("content-type") or "no content type"
    raise NotAnEventStream(f"expected an event stream from {STREAM_PATH}, got {content_type}")


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value and value.isdigit() and "content-encoding" not in response.headers:
        return int(value)
    return None


def part_path(path: Path) -> Path:
    """Downloads are written here first and renamed when complete."""
    return path.with_name(path.name + ".part")


class BaseClient:
    """Configuration and request building shared by both clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be a positive number of seconds")
        if max_retries < 0:
            raise ValueError("max_retries must be zero or more")
        self.base_url = normalise_base_url(base_url)
        self.api_key = api_key or None
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        #: False once this server answered that it has no status stream; waits then
        #: long-poll at once instead of asking again.
        self._streams_offered = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- request building -------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"vidgate-python/{SDK_VERSION}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
            headers["x-api-key"] = self.api_key
        return headers

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _submit_call(
        self,
        model: str,
        prompt: str | None,
        params: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> Call:
        if not model:
            raise ValueError("model is required (see list_models())")
        body: dict[str, Any] = {"model": model}
        if prompt is not None:
            body["prompt"] = prompt
        body.update(params)
        headers = self._headers()
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return Call(
            "POST",
            self._url(SUBMIT_PATH),
            RetryMode.IDEMPOTENT if idempotency_key else RetryMode.UNSENT_ONLY,
            json=body,
            headers=headers,
            timeout_s=self.timeout_s,
        )

    def _status_call(self, run_id: str, model: str | None, step: PollStep | None = None) -> Call:
        """The legacy route when the model is known (it checks the pair), else the unified
        one; ``step`` adds the long-poll hold and stretches the timeout to cover it."""
        if not run_id:
            raise ValueError("run_id is required")
        params = {"runId": run_id}
        if model:
            params["modelSlug"] = model
        timeout_s = self.timeout_s
        if step is not None:
            timeout_s = step.timeout_s
            if step.wait_seconds > 0:
                params["waitSeconds"] = str(step.wait_seconds)
        path = LEGACY_STATUS_PATH if model else UNIFIED_STATUS_PATH
        return Call(
            "GET",
            self._url(path),
            RetryMode.IDEMPOTENT,
            params=params,
            headers=self._headers(),
            timeout_s=timeout_s,
        )

    def _stream_call(self, run_id: str, step: StreamStep) -> Call:
        headers = {**self._headers(), "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if step.last_event_id is not None:
            headers["Last-Event-ID"] = step.last_event_id
        return Call(
            "GET",
            self._url(STREAM_PATH),
            RetryMode.IDEMPOTENT,
            params={"requestId": run_id},
            headers=headers,
            timeout_s=step.timeout_s,
            read_timeout_s=step.read_timeout_s,
        )

    def _streamer(self, run_id: str, timeout_s: float) -> Streamer:
        return Streamer(run_id, timeout_s=timeout_s, request_timeout_s=self.timeout_s)

    def _streamer_after(self, waiter: Waiter) -> Streamer | None:
        """A stream that goes on where ``waiter`` stands (same deadline, last status), or
        None when this server has been found to offer no stream."""
        if not self._streams_offered:
            return None
        return Streamer(
            waiter.run_id,
            timeout_s=waiter.timeout_s,
            request_timeout_s=self.timeout_s,
            deadline=waiter.deadline,
            last=waiter.last,
            clock=waiter.clock,
        )

    def _cancel_call(self, run_id: str) -> Call:
        if not run_id:
            raise ValueError("run_id is required")
        return Call(
            "POST",
            self._url(CANCEL_PATH),
            RetryMode.IDEMPOTENT,  # cancelling twice is a no-op on the server
            json={"runId": run_id},
            headers=self._headers(),
            timeout_s=self.timeout_s,
        )

    def _models_call(self) -> Call:
        return Call(
            "GET",
            self._url(MODELS_PATH),
            RetryMode.IDEMPOTENT,
            headers=self._headers(),
            timeout_s=self.timeout_s,
        )

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        return http.build_request(
            call.method,
            call.url,
            params=call.params or None,
            json=call.json,
            headers=call.headers,
            timeout=httpx.Timeout(call.timeout_s, read=call.read_timeout_s or call.timeout_s),
        )

    def _download_headers(self, url: str) -> dict[str, str]:
        """The key goes only to our own origin (relative content URLs need it); presigned
        storage URLs elsewhere get no credentials, and httpx drops ``Authorization`` when
        a redirect leaves the origin."""
        headers = {"User-Agent": f"vidgate-python/{SDK_VERSION}"}
        if self.api_key and _origin(url) == _origin(self.base_url):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    # -- reading answers ----------------------------------------------------------------

    def _status_from(self, answer: Answer, run_id: str, model: str | None) -> VideoStatus:
        return parse_status(
            answer.body,
            base_url=self.base_url,
            run_id=run_id,
            model=model,
            retry_after_s=answer.retry_after_s,
        )

    def _status_from_event(self, event: ServerSentEvent, run_id: str) -> VideoStatus:
        try:
            body = json.loads(event.data)
        except ValueError:
            raise UnexpectedResponseError(
                f"expected JSON in a status event, got {event.data[:80]!r}"
            ) from None
        return parse_status(body, base_url=self.base_url, run_id=run_id)

    def _video_url(self, status_or_url: VideoStatus | str) -> str:
        """The absolute URL to download, or the reason there is none."""
        if isinstance(status_or_url, str):
            if not status_or_url.strip():
                raise ValueError("an empty URL cannot be downloaded")
            return resolve_url(self.base_url, status_or_url)
        status = finish(status_or_url)  # FAILED / CANCELLED raise their own errors
        if not status.is_completed or not status.video_url:
            raise VideoNotReady(status)
        return status.video_url

    def _retry_delay(
        self, call_retry: RetryMode, error: VidgateError, attempt: int
    ) -> float | None:
        return retry_delay(error, attempt, mode=call_retry, max_retries=self.max_retries)
