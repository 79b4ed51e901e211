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

Errors follow :mod:`vidgate.backends._http` (a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable` with ``retry_after_s`` from
``retry-after-ms``, ``Retry-After`` or ``openai-poll-after-ms``). Any other 4xx at submit
raises :class:`GenerationFailed` (a ``moderation_blocked`` code sets ``is_nsfw``). While
polling, a non-2xx answer other than 404 is also ``ProviderUnavailable``: the job itself may
be fine (a rotated key, say) and polling resumes once the fault is gone. The API key is
scrubbed from every message.

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

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from vidgate.backends._answers import json_or_none, milliseconds_header_s, retry_after_s
from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import failed_update, options_table, percent, rejection_friendly
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    FAILED_FRIENDLY,
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

NSFW_CODES = frozenset(
    {"moderation_blocked", "sentinel_block", "content_policy_violation", "content_filter"}
)
DEFAULT_SECONDS = (4, 8, 12)
_SIZES = {"16:9": "1280x720", "9:16": "720x1280"}
_LARGE_SIZES = {"16:9": "1792x1024", "9:16": "1024x1792"}
_WxH_RE = re.compile(r"^\d{3,4}x\d{3,4}$")
_P_RE = re.compile(r"^(\d{3,4})p$")
_NSFW_RE = re.compile(r"moderation|content polic|safety system", re.IGNORECASE)
_ERROR_CHARS = 300


class OpenAIVideosBackend:
    """Drives an OpenAI-shaped ``/videos`` API through the given ``httpx.AsyncClient``."""

    idempotent_submits = False  # the Videos API documents no idempotency key

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        base_url = settings.base_url.rstrip("/")
        prefix = str(settings.options.get("path_prefix", "/v1")).strip("/")
        self._api_url = f"{base_url}/{prefix}" if prefix else base_url
        key = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="OpenAI",
            root=base_url,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            describe=describe_error,
            retry_after=back_off_s,
        )

    # -- the RemoteBackend port -------------------------------------------------------------

    async def submit(
        self,
        request: GenerationRequest,
        provider_model: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> ProviderJob:
        video_id, _ = await self._api.submit(
            f"{self._api_url}/videos",
            json=build_body(request, provider_model, options),
            id_keys=("id",),
            rejected=self._rejected,
        )
        return ProviderJob(
            request_id=video_id, state={"video_url": f"{self._api_url}/videos/{quote(video_id)}"}
        )

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        return self._api.scrub_update(await self._status(job))

    async def _status(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send("status", "GET", self._video_url(job))
        if response.status_code in (404, 410):
            return ProviderUpdate(
                Status.CANCELLED,
                "deleted",
                error=f"the provider has no video {job.request_id} (deleted)",
            )
        if not response.is_success:
            raise self._api.unavailable(response, "status")
        data = self._api.json_object(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("OpenAI status: the answer has no status")
        hint = poll_after_s(response.headers)
        progress = percent(data.get("progress"))
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
            detail = self._api.scrub(f"{code or 'error'}: {message}")[:_ERROR_CHARS]
            return failed_update(raw, f"OpenAI video failed: {detail}", nsfw=nsfw)
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
        response = await self._api.send("cancel", "DELETE", self._video_url(job))
        self._api.settle_cancel(response, job.request_id)

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream the ``/content`` MP4; the key goes to ``base_url``'s origin only."""
        return self._api.download(
            url,
            headers={"Accept": "application/binary"},
            expired_note="OpenAI keeps video content for about an hour",
        )

    # -- helpers ---------------------------------------------------------------------------

    def _video_url(self, job: ProviderJob) -> str:
        url = job.state.get("video_url")
        if isinstance(url, str) and url:
            return url
        return f"{self._api_url}/videos/{quote(job.request_id)}"

    def _rejected(self, response: httpx.Response) -> GenerationFailed:
        body = json_or_none(response)
        code, message = _error_parts(body.get("error") if isinstance(body, Mapping) else None)
        nsfw = code in NSFW_CODES
        friendly = rejection_friendly(response.status_code, message, nsfw=nsfw)
        return self._api.rejection(response, "submit", user_friendly=friendly, is_nsfw=nsfw)


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
    sizes = options_table(options, "sizes")
    if size := video_size(request.aspect_ratio, request.resolution, sizes):
        body["size"] = size
    if image := request.image_url or request.image_data_url:
        body["input_reference"] = {"image_url": image}
    body.update(request.extra)
    body.update(options_table(options, "input"))
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


# -- small helpers ---------------------------------------------------------------------------


def back_off_s(response: httpx.Response) -> float | None:
    """When to try again: ``retry-after-ms``, ``Retry-After`` or ``openai-poll-after-ms``."""
    headers = response.headers
    for seconds in (milliseconds_header_s(headers, "retry-after-ms"), retry_after_s(headers)):
        if seconds is not None:
            return seconds
    return poll_after_s(headers)


def poll_after_s(headers: httpx.Headers) -> float | None:
    """The ``openai-poll-after-ms`` hint, in seconds."""
    return milliseconds_header_s(headers, "openai-poll-after-ms")


def describe_error(body: object) -> str | None:
    """OpenAI's error detail: ``error.code: error.message``."""
    if isinstance(body, Mapping) and body.get("error") is not None:
        code, message = _error_parts(body["error"])
        return f"{code}: {message}" if code else message
    return None


def _error_parts(error: object) -> tuple[str, str]:
    if isinstance(error, Mapping):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", str(error or "")
