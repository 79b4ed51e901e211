"""OpenRouter video API adapter (``/api/v1/videos``; OpenRouter labels it alpha).

The protocol, as OpenRouter documents it (the video generation guide, the API reference
"Videos" and its OpenAPI file: paths ``/videos``, ``/videos/{jobId}``,
``/videos/{jobId}/content``):

* **submit** ``POST {base_url}/v1/videos`` (``base_url`` is ``https://openrouter.ai/api``)
  with ``Authorization: Bearer <key>`` and a JSON body: ``model``, ``prompt``,
  ``duration``, ``resolution`` and ``aspect_ratio`` (or ``size``), ``seed``,
  ``frame_images`` (``[{"type": "image_url", "image_url": {"url": ...}, "frame_type":
  "first_frame"}]``), ``generate_audio`` and ``provider``. The answer is ``202 {id,
  polling_url, status: "pending"}``; ``polling_url`` is relative in the OpenAPI examples
  and absolute in the guide: both are accepted (a URL off ``base_url``'s origin is not
  followed).
* **status** ``GET {polling_url}`` (or ``{base_url}/v1/videos/{id}``): ``status`` is
  ``pending``, ``in_progress``, ``completed``, ``failed``, ``cancelled`` or ``expired``
  (past its time to live). On completion: ``unsigned_urls`` (the authenticated content
  proxy, ``GET /v1/videos/{id}/content?index=N``, which needs the key) and ``urls``
  (signed storage URLs, where given), with ``usage: {cost, is_byok}``; on failure
  ``error`` is a string.
* **errors**: ``{"error": {"code": N, "message": ...}}`` with the same HTTP status; ``402``
  when the account is out of credit, ``429`` when rate limited.
* **cancel**: none is documented; a cancel here asks nothing of OpenRouter (the job runs
  to its end there).

Errors follow :mod:`vidgate.backends._http`. A ``failed`` job whose error reads as a
content-policy refusal, or a submit refused so (``400`` with such a message), sets
``is_nsfw``. The reported ``usage.cost`` is recorded beside the configured price (the run
costs what vidgate's configuration says).

Status mapping (provider ``status`` -> ours):

===============  =============================================================
``pending``      ``IN_QUEUE``
``in_progress``  ``IN_PROGRESS``
``completed``    ``COMPLETED`` (the first signed URL, else the first unsigned one)
``failed``       ``FAILED``
``expired``      ``FAILED`` (expired at the provider)
``cancelled``    ``CANCELLED``
anything else    ``IN_PROGRESS`` (never terminal)
===============  =============================================================

Model options: ``input`` (a table merged into the body last). Provider options:
``min_poll_interval_s`` (default 2.0; the guide suggests polling every 10-30 s).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from vidgate.backends._answers import json_or_none, same_origin
from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import failed_update, options_table, rejection_friendly
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

_NSFW_RE = re.compile(r"content.?polic|moderation|safety|nsfw", re.IGNORECASE)
_ERROR_CHARS = 300


class OpenRouterBackend:
    """Drives OpenRouter's ``/v1/videos`` through the given ``httpx.AsyncClient``."""

    idempotent_submits = False  # no idempotency key is documented

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 2.0))
        self._root = settings.base_url.rstrip("/")
        self._videos = f"{self._root}/v1/videos"
        key = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="OpenRouter",
            root=self._root,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            describe=describe_error,
        )

    async def submit(
        self,
        request: GenerationRequest,
        provider_model: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> ProviderJob:
        job_id, data = await self._api.submit(
            self._videos,
            json=build_body(request, provider_model, options),
            id_keys=("id",),
            rejected=self._rejected,
        )
        return ProviderJob(request_id=job_id, state={"polling_url": self._polling(job_id, data)})

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        return self._api.scrub_update(await self._status(job))

    async def _status(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send("status", "GET", self._job_url(job))
        if not response.is_success:
            raise self._api.poll_error(response, "status")
        data = self._api.json_object(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("OpenRouter status: the answer has no status")
        if raw == "pending":
            return ProviderUpdate(Status.IN_QUEUE, raw)
        if raw == "completed":
            urls = _strings(data.get("urls")) or _strings(data.get("unsigned_urls"))
            if not urls:
                urls = (f"{self._videos}/{quote(job.request_id)}/content?index=0",)
            return ProviderUpdate(
                Status.COMPLETED,
                raw,
                progress=100.0,
                output_urls=urls,
                provider_cost_usd=_cost(data.get("usage")),
            )
        if raw == "failed":
            message = str(data.get("error") or "no reason given")
            detail = self._api.scrub(message)[:_ERROR_CHARS]
            nsfw = bool(_NSFW_RE.search(message))
            return failed_update(raw, f"OpenRouter video failed: {detail}", nsfw=nsfw)
        if raw == "expired":
            return ProviderUpdate(
                Status.FAILED,
                raw,
                error="the video job expired at OpenRouter (past its time to live)",
                user_friendly_error=EXPIRED_FRIENDLY,
            )
        if raw in ("cancelled", "canceled"):
            return ProviderUpdate(Status.CANCELLED, raw, error="cancelled at OpenRouter")
        return ProviderUpdate(Status.IN_PROGRESS, raw)

    async def cancel(self, job: ProviderJob) -> None:
        """OpenRouter documents no cancel: the job is left to end there."""

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream the video: the content proxy gets the key (same origin), a signed URL
        gets none."""
        return self._api.download(url, expired_note="OpenRouter keeps outputs for a limited time")

    def _polling(self, job_id: str, data: Mapping[str, Any]) -> str:
        """Where the job is polled: its ``polling_url`` (relative or absolute) when it is
        on ``base_url``'s origin, else the documented path."""
        given = data.get("polling_url")
        if isinstance(given, str) and given:
            url = urljoin(self._root + "/", given)
            if same_origin(url, self._root):
                return url
        return f"{self._videos}/{quote(job_id)}"

    def _job_url(self, job: ProviderJob) -> str:
        url = job.state.get("polling_url")
        return url if isinstance(url, str) and url else f"{self._videos}/{quote(job.request_id)}"

    def _rejected(self, response: httpx.Response) -> GenerationFailed:
        message = describe_error(json_or_none(response)) or ""
        nsfw = response.status_code in (400, 403) and bool(_NSFW_RE.search(message))
        friendly = rejection_friendly(response.status_code, message, nsfw=nsfw)
        return self._api.rejection(response, "submit", user_friendly=friendly, is_nsfw=nsfw)


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> OpenRouterBackend:
    return OpenRouterBackend(http, settings)


def build_body(
    request: GenerationRequest, model: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The create body: mapped fields, then ``extra``, then ``options.input``."""
    body: dict[str, Any] = {"model": model}
    if request.prompt is not None:
        body["prompt"] = request.prompt
    if request.duration_s is not None:
        body["duration"] = round(request.duration_s)
    if request.resolution:
        body["resolution"] = request.resolution
    if request.aspect_ratio and request.aspect_ratio != "auto":
        body["aspect_ratio"] = request.aspect_ratio
    if request.seed is not None:
        body["seed"] = request.seed
    if image := request.image_url or request.image_data_url:
        body["frame_images"] = [
            {"type": "image_url", "image_url": {"url": image}, "frame_type": "first_frame"}
        ]
    body.update(request.extra)
    body.update(options_table(options, "input"))
    return body


def describe_error(body: object) -> str | None:
    """OpenRouter's error detail: ``error.message`` (``{"error": {"code", "message"}}``)."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("code") or "")
    return None if error is None else str(error)


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def _cost(usage: object) -> float | None:
    if isinstance(usage, Mapping):
        cost = usage.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            return float(cost)
    return None
