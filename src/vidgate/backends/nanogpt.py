"""NanoGPT's video API as an upstream (``https://nano-gpt.com``, or another vidgate).

The protocol (docs.nano-gpt.com; ``/work/shared/research/nanogpt_api.md``):

* submit: ``POST /api/generate-video`` with the NanoGPT body (``model``, ``prompt``,
  ``duration``, ``aspect_ratio``, ``imageDataUrl``...); the answer is ``202`` with
  ``{runId, id, status: "pending", cost, ...}``. Errors come as
  ``{"error": {"message", "type"}}`` (also ``{"error": "text"}`` or
  ``{"error": <code>, "message"}``): ``400 CONTENT_POLICY_VIOLATION``, ``401``,
  ``402 INSUFFICIENT_BALANCE``, ``429`` with ``Retry-After``;
* poll: ``GET /api/video/status?requestId=``. The answer nests ``data.status`` in upper case
  and may also carry a flat lower-case ``status``, ``progress`` and ``videoUrl``; the nested
  value wins. On success ``data.output.video.url`` may be *relative*
  (``/api/generate-video/content?...``), so it is resolved against ``base_url``. Failures
  carry ``error``, ``isNSFWError`` and ``userFriendlyError``;
* outputs: URLs on NanoGPT's own origin (the content route) need the key and redirect to
  pre-signed storage; the key is sent to that origin only, never along a redirect elsewhere;
* cancel: NanoGPT documents none. vidgate's ``POST /api/generate-video/cancel`` with
  ``{"runId"}`` is tried; a ``404``/``405`` (a NanoGPT without it) is not an error.

Auth is ``x-api-key: KEY`` on every call.

Status mapping (``provider_status`` is the raw ``data.status``, else the flat ``status``):

===============================================================  ===========
NanoGPT (any case)                                               our status
===============================================================  ===========
``IN_QUEUE``, ``QUEUED``, ``PENDING``                            IN_QUEUE
``IN_PROGRESS``, ``PROCESSING``, ``GENERATING``, ``DELIVERING``  IN_PROGRESS
``COMPLETED``, ``SUCCEEDED``                                     COMPLETED
``FAILED``, ``ERROR``                                            FAILED
``CANCELED``, ``CANCELLED``                                      CANCELLED
anything else (e.g. ``unknown``)                                 IN_PROGRESS
===============================================================  ===========

Request mapping: the request is sent in NanoGPT's own shape: ``prompt``,
``negative_prompt``, ``duration`` (``"5"``), ``aspect_ratio``, ``resolution``, ``seed``,
``imageDataUrl``, ``imageUrl``, plus every ``extra`` key as the client sent it (this is the
same API, so nothing is dropped). ``webhookUrl`` is not forwarded: the webhook is ours.

Model options (``[models.X].options``):

* ``input`` (object): merged into the body last, so the operator's fixed values win.

Provider options (``[providers.nanogpt].options``):

* ``min_poll_interval_s`` (number, default 1): the floor under the worker's poll cadence.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
)
from vidgate.logs import event
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://nano-gpt.com"
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
NSFW_MESSAGE = (
    "The video was blocked by the provider's content policy. Please change the prompt or "
    "image and try again."
)
STATUSES = {
    "IN_QUEUE": Status.IN_QUEUE,
    "QUEUED": Status.IN_QUEUE,
    "PENDING": Status.IN_QUEUE,
    "IN_PROGRESS": Status.IN_PROGRESS,
    "PROCESSING": Status.IN_PROGRESS,
    "GENERATING": Status.IN_PROGRESS,
    "DELIVERING": Status.IN_PROGRESS,
    "COMPLETED": Status.COMPLETED,
    "SUCCEEDED": Status.COMPLETED,
    "FAILED": Status.FAILED,
    "ERROR": Status.FAILED,
    "CANCELED": Status.CANCELLED,
    "CANCELLED": Status.CANCELLED,
}


class NanoGPTBackend:
    """Drives NanoGPT video jobs (or those of another vidgate, which serves the same API)."""

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name or "nanogpt"
        self._http = http
        self._settings = settings
        # NanoGPT sets no limit on status polls (they are cached); its examples poll every 5 s.
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        self._root = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._timeout = httpx.Timeout(settings.timeout_s)

    # -- the port ----------------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
    ) -> ProviderJob:
        body = build_body(request, provider_model, options)
        response = await self._send("submit", "POST", "/api/generate-video", json=body)
        if not response.is_success:
            raise self._submit_error(response)
        data = self._json(response, "submit")
        run_id = data.get("runId") or data.get("id")
        if not isinstance(run_id, str) or not run_id:
            raise ProviderUnavailable("NanoGPT submit: the answer has no runId")
        state: dict[str, Any] = {"run_id": run_id, "model": provider_model}
        if isinstance(data.get("cost"), int | float):
            state["cost"] = data["cost"]
        return ProviderJob(request_id=run_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._send(
            "status", "GET", "/api/video/status", params={"requestId": _run_id(job)}
        )
        if not response.is_success:
            raise self._http_error("status", response)
        return self._clean_update(status_update(self._json(response, "status"), self._root))

    async def cancel(self, job: ProviderJob) -> None:
        """vidgate's cancel route; an upstream without it (``404``/``405``) is not an error."""
        response = await self._send(
            "cancel", "POST", "/api/generate-video/cancel", json={"runId": _run_id(job)}
        )
        if response.is_success:
            return
        if _transient(response.status_code):
            raise self._http_error("cancel", response)
        event(
            log,
            "provider.cancel_refused",
            provider=self.name,
            request_id=job.request_id,
            http_status=response.status_code,
        )

    async def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one video; the key goes to NanoGPT's own origin only."""
        target = urljoin(self._root + "/", url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = self._headers() if _same_origin(target, self._root) else {}
            request = self._http.build_request(
                "GET", target, headers=headers, timeout=self._timeout
            )
            try:
                response = await self._http.send(request, stream=True, follow_redirects=False)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                raise ProviderUnavailable(
                    self._clean(f"NanoGPT download: {_describe(exc)}")
                ) from exc
            try:
                if response.is_redirect and "location" in response.headers:
                    target = urljoin(str(response.url), response.headers["location"])
                    continue
                if not response.is_success:
                    await response.aread()
                    raise self._http_error("download", response, gone_is_final=True)
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    yield chunk
                return
            except (httpx.TransportError, httpx.DecodingError, httpx.StreamError) as exc:
                raise ProviderUnavailable(
                    self._clean(f"NanoGPT download: {_describe(exc)}")
                ) from exc
            finally:
                await response.aclose()
        raise ProviderUnavailable("NanoGPT download: too many redirects")

    # -- HTTP --------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"x-api-key": key} if key else {}

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                f"{self._root}{path}",
                json=json,
                params=params,
                headers=self._headers(),
                timeout=self._timeout,
            )
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise ProviderUnavailable(
                self._clean(f"NanoGPT {operation}: {_describe(exc)}")
            ) from exc

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                self._clean(
                    f"NanoGPT {operation}: HTTP {response.status_code} answer is not a JSON "
                    f"object: {response.text[:200]!r}"
                )
            )
        return data

    def _submit_error(self, response: httpx.Response) -> GenerationFailed | ProviderUnavailable:
        status = response.status_code
        message, kind = _error_detail(response)
        if not _transient(status) and _is_content_policy(kind):
            return GenerationFailed(
                self._clean(f"NanoGPT submit: HTTP {status} {kind}: {message}"),
                user_friendly=self._clean(message) if message else NSFW_MESSAGE,
                is_nsfw=True,
                provider_status=kind,
            )
        return self._http_error("submit", response)

    def _http_error(
        self, operation: str, response: httpx.Response, *, gone_is_final: bool = False
    ) -> GenerationFailed | ProviderUnavailable:
        status = response.status_code
        message, kind = _error_detail(response)
        text = f"NanoGPT {operation}: HTTP {status}" + (f" {kind}" if kind else "")
        text = self._clean(f"{text}: {message or repr(response.text[:200])}")
        if _transient(status):
            return ProviderUnavailable(text, retry_after_s=_retry_after(response))
        if gone_is_final and status in (404, 410):
            text += " (the output URL has expired)"
        return GenerationFailed(text, provider_status=kind or f"HTTP {status}")

    def _clean(self, message: str) -> str:
        key = self._settings.api_key
        return message.replace(key, "[redacted]") if key and len(key) >= 8 else message

    def _clean_update(self, update: ProviderUpdate) -> ProviderUpdate:
        """The provider's own error text, minus our key should it ever echo it."""
        if update.error is None and update.user_friendly_error is None:
            return update
        return dataclasses.replace(
            update,
            error=None if update.error is None else self._clean(update.error),
            user_friendly_error=(
                None
                if update.user_friendly_error is None
                else self._clean(update.user_friendly_error)
            ),
        )


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> NanoGPTBackend:
    return NanoGPTBackend(http, settings)


# -- request and answer mapping (pure) -------------------------------------------------------


def build_body(
    request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``POST /api/generate-video`` body for one request."""
    body: dict[str, Any] = dict(request.extra)
    body["model"] = provider_model
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration": _duration(request.duration_s),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "seed": request.seed,
        "imageDataUrl": request.image_data_url,
        "imageUrl": request.image_url,
    }
    body.update({k: v for k, v in fields.items() if v is not None})
    fixed = options.get("input")
    if isinstance(fixed, Mapping):
        body.update(fixed)
    return body


def status_update(body: Mapping[str, Any], root: str) -> ProviderUpdate:
    """Map one ``GET /api/video/status`` answer to our status."""
    nested = body.get("data")
    data: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    raw = data.get("status")
    if not isinstance(raw, str) or not raw:
        raw = body.get("status")
    raw_status = raw if isinstance(raw, str) else repr(raw)
    status = STATUSES.get(raw_status.upper(), Status.IN_PROGRESS)
    progress = _percent(data.get("progress"))
    if progress is None:
        progress = _percent(body.get("progress"))
    position = data.get("queuePosition")
    queue_position = position if isinstance(position, int) and position >= 0 else None
    if status is Status.COMPLETED:
        url = _output_url(data) or body.get("videoUrl")
        if not isinstance(url, str) or not url:
            return ProviderUpdate(
                status=Status.FAILED,
                provider_status=raw_status,
                error="NanoGPT reported completion without a video URL",
            )
        return ProviderUpdate(
            status=status,
            provider_status=raw_status,
            progress=100.0,
            output_urls=(urljoin(root + "/", url),),
        )
    if status is Status.FAILED:
        is_nsfw = data.get("isNSFWError", body.get("isNSFWError")) is True
        friendly = data.get("userFriendlyError", body.get("userFriendlyError"))
        detail = _text(data.get("error")) or _text(body.get("error")) or "no reason given"
        return ProviderUpdate(
            status=status,
            provider_status=raw_status,
            error=f"NanoGPT job failed: {detail}",
            is_nsfw=is_nsfw,
            user_friendly_error=(friendly if isinstance(friendly, str) and friendly else None)
            or (NSFW_MESSAGE if is_nsfw else None),
        )
    return ProviderUpdate(
        status=status,
        provider_status=raw_status,
        progress=progress if status is Status.IN_PROGRESS else None,
        queue_position=queue_position if status is Status.IN_QUEUE else None,
    )


# -- helpers -----------------------------------------------------------------------------------


def _run_id(job: ProviderJob) -> str:
    run_id = job.state.get("run_id") or job.request_id
    if not isinstance(run_id, str) or not run_id:
        raise GenerationFailed("NanoGPT job has no runId to poll")
    return run_id


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _output_url(data: Mapping[str, Any]) -> str | None:
    output = data.get("output")
    if not isinstance(output, Mapping):
        return None
    video = output.get("video")
    url = video.get("url") if isinstance(video, Mapping) else output.get("url")
    return url if isinstance(url, str) and url else None


def _percent(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(100.0, max(0.0, float(value)))


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("message"), str):
        return str(value["message"])
    return None


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """(message, type) from any of NanoGPT's error envelopes."""
    try:
        data = response.json()
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error = data.get("error")
    kinds: list[object] = []
    if isinstance(error, dict):
        message = error.get("message")
        kinds = [error.get("type"), error.get("code")]
    else:
        message = error if isinstance(error, str) else data.get("message")
    names = [k for k in kinds if isinstance(k, str) and k]
    # The inline-moderation block says so in ``code`` under a generic ``type``.
    kind = next((k for k in names if _is_content_policy(k)), names[0] if names else "")
    return str(message or "")[:500], kind


def _is_content_policy(kind: str) -> bool:
    return kind.lower() == "content_policy_violation"


def _transient(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _same_origin(url: str, root: str) -> bool:
    a, b = urlsplit(url), urlsplit(root)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None
