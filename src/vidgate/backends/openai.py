"""OpenAI Videos API adapter (``/v1/videos``, the Sora shape many gateways copy).

The protocol, as OpenAI documents it (API reference "Videos", the video generation guide,
and the ``openai`` Python client's ``resources/videos.py``):

* **submit** ``POST {api}/videos`` with ``Authorization: Bearer <key>`` and a JSON body:
  ``model``, ``prompt``, ``seconds`` (a string: ``"4"``, ``"8"``, ``"12"``), ``size``
  (``"1280x720"``, ``"720x1280"``, ``"1792x1024"``, ``"1024x1792"``) and
  ``input_reference: {"image_url": <URL or data URL>}``. The answer is the ``video``
  object; its ``id`` is all we keep (with the URL it lives at).
* **status** ``GET {api}/videos/{id}``: ``status`` is ``queued``, ``in_progress``,
  ``completed`` or ``failed``, with ``progress`` (0-100), ``expires_at`` and
  ``error: {code, message}``. The ``openai-poll-after-ms`` header suggests when to ask
  again; we pass it on as ``retry_after_s``.
* **content** ``GET {api}/videos/{id}/content`` streams the MP4 and needs the key; it is the
  output URL we report. Download URLs are valid for about an hour (``expires_at``).
* **cancel**: the API has no cancel, only ``DELETE {api}/videos/{id}``, which we use; a
  video that is gone (404) afterwards is reported as ``CANCELLED``.
* moderation refusals come back as ``error.code`` ``moderation_blocked`` (or
  ``sentinel_block``), either at submit (HTTP 400) or as a ``failed`` video.

Errors: a 429, 408/409/425 or 5xx answer, a timeout, a connection fault or a body that is
not JSON raises :class:`ProviderUnavailable` with ``retry_after_s`` from ``Retry-After`` (or
``retry-after-ms`` / ``openai-poll-after-ms``). Any other 4xx at submit raises
:class:`GenerationFailed` (a ``moderation_blocked`` code sets ``is_nsfw``). While polling, a
non-2xx answer other than 404 is also ``ProviderUnavailable``: the job itself may be fine (a
rotated key, say) and polling resumes once the fault is gone. The API key is scrubbed from
every message.

Status mapping (provider ``status`` -> ours):

==================  =============================================================
``queued``          ``IN_QUEUE``
``in_progress``     ``IN_PROGRESS`` (``progress`` passed on)
``completed``       ``COMPLETED`` (output URL: the ``/content`` endpoint)
``failed``          ``FAILED`` (``is_nsfw`` for moderation codes)
``expired``         ``FAILED`` (seen in the wild, not in the documented enum)
``cancelled``       ``CANCELLED`` (not documented; handled anyway)
HTTP 404 on poll    ``CANCELLED`` (the video was deleted)
anything else       ``IN_PROGRESS`` (never terminal)
==================  =============================================================

The API takes neither ``negative_prompt`` nor ``seed``; they are not sent.

Model options (the model's config section):

``input``
    table merged into the body last, so its fixed values win.
``seconds_choices``
    the clip lengths the model accepts (default ``[4, 8, 12]``); a requested duration is
    rounded up to the next one (or down to the longest). An empty list sends it as is.
``sizes``
    table ``aspect ratio -> size``, overriding the defaults (``16:9`` -> ``1280x720``,
    ``9:16`` -> ``720x1280``, or ``1792x1024`` / ``1024x1792`` when the requested
    resolution is 1024p or more). A ``WxH`` resolution is sent as the size unchanged.

Provider options (``[providers.NAME]``): ``path_prefix`` (default ``"/v1"``; Azure uses
``"/openai/v1"``), ``min_poll_interval_s`` (default 1.0, the official client's fallback).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

NSFW_FRIENDLY = "Content flagged as inappropriate. Please modify your prompt and try again."
FAILED_FRIENDLY = "The video could not be generated. Please try again."
EXPIRED_FRIENDLY = "The generated video expired at the provider before it could be saved."
NSFW_CODES = frozenset(
    {"moderation_blocked", "sentinel_block", "content_policy_violation", "content_filter"}
)
DEFAULT_SECONDS = (4, 8, 12)
_SIZES = {"16:9": "1280x720", "9:16": "720x1280"}
_LARGE_SIZES = {"16:9": "1792x1024", "9:16": "1024x1792"}
_WxH_RE = re.compile(r"^\d{3,4}x\d{3,4}$")
_P_RE = re.compile(r"^(\d{3,4})p$")
_NSFW_RE = re.compile(r"moderation|content polic|safety system", re.IGNORECASE)
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
_CHUNK_BYTES = 256 * 1024
_SNIPPET_CHARS = 300


class OpenAIVideosBackend:
    """Drives an OpenAI-shaped ``/videos`` API through the given ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        self._http = http
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        prefix = str(settings.options.get("path_prefix", "/v1")).strip("/")
        self._api = f"{self._base_url}/{prefix}" if prefix else self._base_url

    # -- the RemoteBackend port -------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
    ) -> ProviderJob:
        response = await self._send(
            "POST",
            f"{self._api}/videos",
            "submit",
            json=build_body(request, provider_model, options),
            headers=self._auth_headers(),
        )
        if not response.is_success:
            raise self._submit_error(response)
        data = self._json(response, "submit")
        video_id = data.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise ProviderUnavailable("openai submit: the answer has no video id")
        return ProviderJob(
            request_id=video_id, state={"video_url": f"{self._api}/videos/{quote(video_id)}"}
        )

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._send(
            "GET", self._video_url(job), "status", headers=self._auth_headers()
        )
        if response.status_code in (404, 410):
            return ProviderUpdate(
                Status.CANCELLED,
                "deleted",
                error=f"the provider has no video {job.request_id} (deleted)",
            )
        if not response.is_success:
            raise self._unavailable(response, "status")
        data = self._json(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("openai status: the answer has no status")
        hint = poll_after_s(response.headers)
        progress = _progress(data.get("progress"))
        if raw == "queued":
            return ProviderUpdate(Status.IN_QUEUE, raw, progress=progress, retry_after_s=hint)
        if raw == "in_progress":
            return ProviderUpdate(Status.IN_PROGRESS, raw, progress=progress, retry_after_s=hint)
        if raw == "completed":
            return ProviderUpdate(
                Status.COMPLETED,
                raw,
                progress=100.0,
                output_urls=(f"{self._video_url(job)}/content",),
            )
        if raw == "failed":
            code, message = _error_parts(data.get("error"))
            nsfw = code in NSFW_CODES or bool(_NSFW_RE.search(message))
            detail = self._redact(f"{code or 'error'}: {message}")[:_SNIPPET_CHARS]
            return ProviderUpdate(
                Status.FAILED,
                raw,
                error=f"OpenAI video failed: {detail}",
                is_nsfw=nsfw,
                user_friendly_error=NSFW_FRIENDLY if nsfw else FAILED_FRIENDLY,
            )
        if raw == "expired":
            return ProviderUpdate(
                Status.FAILED,
                raw,
                error="the video expired at the provider",
                user_friendly_error=EXPIRED_FRIENDLY,
            )
        if raw in ("cancelled", "canceled"):
            return ProviderUpdate(Status.CANCELLED, raw)
        return ProviderUpdate(Status.IN_PROGRESS, raw, progress=progress, retry_after_s=hint)

    async def cancel(self, job: ProviderJob) -> None:
        """Delete the video (the API has no cancel); one already gone is fine.

        Raises :class:`ProviderUnavailable` on a passing fault, so the caller may try again.
        """
        response = await self._send(
            "DELETE", self._video_url(job), "cancel", headers=self._auth_headers()
        )
        if response.is_success or not _is_transient(response.status_code):
            return
        raise self._unavailable(response, "cancel")

    async def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        headers = {"Accept": "application/binary"}
        if _same_origin(url, self._base_url):
            headers |= self._auth_headers()
        try:
            async with self._http.stream(
                "GET",
                url,
                headers=headers,
                timeout=self._settings.timeout_s,
                follow_redirects=True,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._download_error(response, url)
                async for chunk in response.aiter_bytes(_CHUNK_BYTES):
                    yield chunk
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"openai download: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"openai download: {type(exc).__name__}: {exc}")
            ) from exc

    # -- HTTP plumbing ---------------------------------------------------------------------

    async def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, timeout=self._settings.timeout_s, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"openai {what}: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"openai {what}: {type(exc).__name__}: {exc}")
            ) from exc

    def _auth_headers(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _video_url(self, job: ProviderJob) -> str:
        url = job.state.get("video_url")
        if isinstance(url, str) and url:
            return url
        return f"{self._api}/videos/{quote(job.request_id)}"

    def _json(self, response: httpx.Response, what: str) -> Mapping[str, Any]:
        data = _json_or_none(response)
        if not isinstance(data, Mapping):
            raise ProviderUnavailable(
                f"openai {what}: HTTP {response.status_code} with a body that is not a JSON "
                f"object: {self._snippet(response)}",
                retry_after_s=retry_after_s(response.headers),
            )
        return data

    def _submit_error(self, response: httpx.Response) -> Exception:
        code = response.status_code
        if _is_transient(code):
            return self._unavailable(response, "submit")
        body = _json_or_none(response)
        error_code, message = _error_parts(body.get("error") if isinstance(body, Mapping) else None)
        nsfw = error_code in NSFW_CODES
        detail = self._describe(response)
        friendly = FAILED_FRIENDLY
        if nsfw:
            friendly = NSFW_FRIENDLY
        elif code in (400, 422) and message:
            friendly = f"The provider rejected the request: {self._redact(message)}"
        return GenerationFailed(
            f"OpenAI rejected the request (HTTP {code}): {detail}",
            user_friendly=friendly,
            is_nsfw=nsfw,
            provider_status=str(code),
        )

    def _download_error(self, response: httpx.Response, url: str) -> Exception:
        code = response.status_code
        if _is_transient(code):
            return self._unavailable(response, "download")
        where = self._redact(urlsplit(url)._replace(query="").geturl())
        return GenerationFailed(
            f"OpenAI video content {where} is not available (HTTP {code}): "
            f"{self._describe(response)}",
            user_friendly=EXPIRED_FRIENDLY,
            provider_status=str(code),
        )

    def _unavailable(self, response: httpx.Response, what: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"openai {what}: HTTP {response.status_code}: {self._describe(response)}",
            retry_after_s=retry_after_s(response.headers),
        )

    def _describe(self, response: httpx.Response) -> str:
        """A short, key-free account of an error body (``{"error": {code, message}}``)."""
        body = _json_or_none(response)
        if isinstance(body, Mapping) and body.get("error") is not None:
            code, message = _error_parts(body["error"])
            text = f"{code}: {message}" if code else message
            return self._redact(text)[:_SNIPPET_CHARS]
        return self._snippet(response)

    def _snippet(self, response: httpx.Response) -> str:
        return self._redact(response.text[:_SNIPPET_CHARS])

    def _redact(self, text: str) -> str:
        key = self._settings.api_key
        return text.replace(key, "***") if key else text


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> OpenAIVideosBackend:
    return OpenAIVideosBackend(http, settings)


# -- request mapping -------------------------------------------------------------------------


def build_body(
    request: GenerationRequest, model: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The create body: mapped fields, then ``extra``, then ``options.input``."""
    body: dict[str, Any] = {"model": model}
    if request.prompt is not None:
        body["prompt"] = request.prompt
    seconds = snap_seconds(request.duration_s, options.get("seconds_choices", DEFAULT_SECONDS))
    if seconds is not None:
        body["seconds"] = seconds
    if size := video_size(request.aspect_ratio, request.resolution, _table(options, "sizes")):
        body["size"] = size
    if image := request.image_url or request.image_data_url:
        body["input_reference"] = {"image_url": image}
    body.update(request.extra)
    body.update(_table(options, "input"))
    return body


def snap_seconds(duration_s: float | None, choices: object) -> str | None:
    """The clip length to ask for, as the API's string: the next accepted one up."""
    if duration_s is None:
        return None
    if not isinstance(choices, list | tuple) or not all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in choices
    ):
        raise GenerationFailed(
            f"model option seconds_choices must be a list of numbers, got {choices!r}",
            user_friendly=FAILED_FRIENDLY,
        )
    if not choices:
        return str(round(duration_s))
    allowed = sorted(float(c) for c in choices)
    pick = next((c for c in allowed if c >= duration_s), allowed[-1])
    return str(int(pick)) if pick.is_integer() else str(pick)


def video_size(
    aspect_ratio: str | None, resolution: str | None, sizes: Mapping[str, Any]
) -> str | None:
    if resolution and _WxH_RE.match(resolution):
        return resolution
    if not aspect_ratio:
        return None
    if aspect_ratio in sizes:
        return str(sizes[aspect_ratio])
    match = _P_RE.match(resolution or "")
    table = _LARGE_SIZES if match and int(match.group(1)) >= 1024 else _SIZES
    return table.get(aspect_ratio)


def _table(options: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = options.get(key) or {}
    if not isinstance(value, Mapping):
        raise GenerationFailed(
            f"model option {key!r} must be a table, got {type(value).__name__}",
            user_friendly=FAILED_FRIENDLY,
        )
    return value


# -- small helpers ---------------------------------------------------------------------------


def retry_after_s(headers: httpx.Headers) -> float | None:
    """When to try again: ``retry-after-ms``, ``Retry-After`` or ``openai-poll-after-ms``."""
    if (ms := _number(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value:
        if (seconds := _number(value)) is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return poll_after_s(headers)


def poll_after_s(headers: httpx.Headers) -> float | None:
    """The ``openai-poll-after-ms`` hint, in seconds."""
    ms = _number(headers.get("openai-poll-after-ms"))
    return ms / 1000 if ms is not None else None


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_parts(error: object) -> tuple[str, str]:
    if isinstance(error, Mapping):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", str(error or "")


def _progress(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(min(100.0, max(0.0, value)))
    return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _is_transient(code: int) -> bool:
    return code in _TRANSIENT_4XX or code >= 500


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
