"""NanoGPT's video API as an upstream (``https://nano-gpt.com``, or another vidgate).

The protocol (docs.nano-gpt.com; the research notes on the NanoGPT API):

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

Errors follow :mod:`vidgate.backends._http`: a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable`; a poll refused with 401/403 is
``ProviderUnavailable`` too (an operator can fix the key); other refusals are
:class:`GenerationFailed` (``CONTENT_POLICY_VIOLATION`` sets ``is_nsfw``).

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
* ``idempotency_keys`` (bool, default false): send each run's ``Idempotency-Key`` with its
  submit. Hosted NanoGPT documents no such key, so it stays off there; another vidgate
  honours it (a repeat with the same key creates nothing new), so turn it on for a vidgate
  upstream and a submit whose answer was lost is sent again safely.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urljoin

import httpx

from vidgate.backends._answers import json_or_none
from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import format_duration, percent
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

DEFAULT_BASE_URL = "https://nano-gpt.com"
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
        # NanoGPT sets no limit on status polls (they are cached); its examples poll every 5 s.
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        self.idempotent_submits = settings.options.get("idempotency_keys", False) is True
        self._root = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        key = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="NanoGPT",
            root=self._root,
            headers={"x-api-key": key} if key else {},
            describe=describe_error,
        )

    # -- the port ----------------------------------------------------------------------------

    async def submit(
        self,
        request: GenerationRequest,
        provider_model: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> ProviderJob:
        keyed = self.idempotent_submits and idempotency_key
        run_id, data = await self._api.submit(
            f"{self._root}/api/generate-video",
            json=build_body(request, provider_model, options),
            id_keys=("runId", "id"),
            rejected=self._rejected,
            headers={"Idempotency-Key": keyed} if keyed else None,
        )
        state: dict[str, Any] = {"run_id": run_id, "model": provider_model}
        if isinstance(data.get("cost"), int | float):
            state["cost"] = data["cost"]
        return ProviderJob(request_id=run_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send(
            "status", "GET", f"{self._root}/api/video/status", params={"requestId": _run_id(job)}
        )
        if not response.is_success:
            raise self._api.poll_error(response, "status")
        data = self._api.json_object(response, "status")
        return self._api.scrub_update(status_update(data, self._root))

    async def cancel(self, job: ProviderJob) -> None:
        """vidgate's cancel route; an upstream without it (``404``/``405``) is not an error."""
        response = await self._api.send(
            "cancel",
            "POST",
            f"{self._root}/api/generate-video/cancel",
            json={"runId": _run_id(job)},
        )
        self._api.settle_cancel(response, job.request_id)

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one video; the key goes to NanoGPT's own origin only."""
        return self._api.download(url, expired_note="the output URL has expired")

    def _rejected(self, response: httpx.Response) -> GenerationFailed:
        message, kind = error_detail(json_or_none(response))
        if _is_content_policy(kind):
            return self._api.rejection(
                response,
                "submit",
                user_friendly=message or NSFW_MESSAGE,
                is_nsfw=True,
                provider_status=kind,
            )
        return self._api.rejection(response, "submit", provider_status=kind or None)


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
        "duration": format_duration(request.duration_s, "string"),
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
    progress = percent(data.get("progress"))
    if progress is None:
        progress = percent(body.get("progress"))
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


def _output_url(data: Mapping[str, Any]) -> str | None:
    output = data.get("output")
    if not isinstance(output, Mapping):
        return None
    video = output.get("video")
    url = video.get("url") if isinstance(video, Mapping) else output.get("url")
    return url if isinstance(url, str) and url else None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("message"), str):
        return str(value["message"])
    return None


def describe_error(body: object) -> str | None:
    """NanoGPT's error detail: ``TYPE: message``."""
    message, kind = error_detail(body)
    return f"{kind}: {message}" if kind else message or None


def error_detail(body: object) -> tuple[str, str]:
    """(message, type) from any of NanoGPT's error envelopes."""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    kinds: list[object] = []
    if isinstance(error, dict):
        message = error.get("message")
        kinds = [error.get("type"), error.get("code")]
    else:
        message = error if isinstance(error, str) else body.get("message")
    names = [k for k in kinds if isinstance(k, str) and k]
    # The inline-moderation block says so in ``code`` under a generic ``type``.
    kind = next((k for k in names if _is_content_policy(k)), names[0] if names else "")
    return str(message or "")[:500], kind


def _is_content_policy(kind: str) -> bool:
    return kind.lower() == "content_policy_violation"
