"""Runway's task API (``https://api.dev.runwayml.com``).

The protocol, as the ``runwayml`` SDK and docs.dev.runwayml.com describe it:

* submit: ``POST /v1/text_to_video`` (or ``/v1/image_to_video`` when the request has an
  image) with ``{"model", "promptText", "promptImage"?, "ratio", "duration"?, "seed"?, ...}``;
  the answer is ``{"id": ...}``;
* poll: ``GET /v1/tasks/{id}``. Runway asks clients not to expect updates more often than
  once every five seconds, hence :attr:`RunwayBackend.min_poll_interval_s`;
* cancel: ``DELETE /v1/tasks/{id}`` cancels a pending, throttled or running task (and deletes
  a finished one);
* outputs: ``output`` is a list of pre-signed URLs that expire within 24-48 hours; they need
  no auth, so the key is never sent with them.

Every call carries ``Authorization: Bearer KEY`` and ``X-Runway-Version``.

Errors follow :mod:`vidgate.backends._http`: a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable`; a poll refused with 401/403 is
``ProviderUnavailable`` too (an operator can fix the key); other refusals are
:class:`GenerationFailed`.

Status mapping (``provider_status`` is Runway's ``status``):

==============================  =============================================
Runway                          our status
==============================  =============================================
``PENDING``, ``THROTTLED``      IN_QUEUE
``RUNNING``                     IN_PROGRESS (``progress`` 0-1 → 0-100)
``SUCCEEDED``                   COMPLETED (``output`` URLs)
``FAILED``                      FAILED; ``error`` = ``failure [failureCode]``;
                                ``SAFETY.*`` and ``INPUT_PREPROCESSING.SAFETY.*``
                                codes set ``is_nsfw``
``CANCELLED``                   CANCELLED
anything else                   IN_PROGRESS
==============================  =============================================

Request mapping: ``prompt`` → ``promptText``; ``image_data_url`` or ``image_url`` →
``promptImage``; ``negative_prompt`` → ``negativePrompt``; ``duration_s`` → ``duration``
(whole seconds); ``seed`` → ``seed`` (folded into Runway's 0..2**32-1 range);
``aspect_ratio`` + ``resolution`` → ``ratio`` (``16:9`` → ``1280:720``, at ``1080p`` →
``1920:1080``; ``1:1`` → ``960:960``; ``4:3`` → ``1104:832``; ``21:9`` → ``1584:672``; a
``1280x720`` resolution → ``1280:720``). From ``extra``: ``ratio`` (a raw Runway ratio),
``audio`` (alias ``generateAudio``), ``contentModeration`` and ``references`` pass through.

Model options (``[models.X].options``):

* ``input`` (object): merged into the body last, so the operator's fixed values win.
* ``default_ratio`` (string, default ``1280:720``): used when the request names no ratio
  (Runway requires one).
* ``default_duration_s`` (number): sent when the request has no duration (some models
  require one).

Provider options (``[providers.runway].options``):

* ``runway_version`` (string, default ``2024-11-06``): the ``X-Runway-Version`` header.
* ``min_poll_interval_s`` (number): may raise the floor above Runway's documented 5 s, never
  lower it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import percent
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
RUNWAY_VERSION = "2024-11-06"
MIN_POLL_INTERVAL_S = 5.0
NSFW_MESSAGE = (
    "The video was blocked by the provider's content moderation. Please change the prompt or "
    "image and try again."
)
STATUSES = {
    "PENDING": Status.IN_QUEUE,
    "THROTTLED": Status.IN_QUEUE,
    "RUNNING": Status.IN_PROGRESS,
    "SUCCEEDED": Status.COMPLETED,
    "FAILED": Status.FAILED,
    "CANCELLED": Status.CANCELLED,
}
RATIOS = {
    ("16:9", "1080p"): "1920:1080",
    ("9:16", "1080p"): "1080:1920",
    ("16:9", None): "1280:720",
    ("9:16", None): "720:1280",
    ("1:1", None): "960:960",
    ("4:3", None): "1104:832",
    ("3:4", None): "832:1104",
    ("21:9", None): "1584:672",
}
_PASSTHROUGH = {
    "audio": "audio",
    "generateAudio": "audio",
    "contentModeration": "contentModeration",
    "references": "references",
}
_RATIO_RE = re.compile(r"^\d{3,4}:\d{3,4}$")
_SIZE_RE = re.compile(r"^(\d{3,4})x(\d{3,4})$")


class RunwayBackend:
    """Drives Runway tasks."""

    idempotent_submits = False  # Runway documents no idempotency key for creating tasks

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name or "runway"
        # Runway: "should not expect updates more frequent than once every five seconds".
        floor = settings.options.get("min_poll_interval_s", MIN_POLL_INTERVAL_S)
        self.min_poll_interval_s = max(MIN_POLL_INTERVAL_S, float(floor))
        self._root = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        version = str(settings.options.get("runway_version") or RUNWAY_VERSION)
        headers = {"X-Runway-Version": version}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._api = ProviderHTTP(
            http, settings, label="Runway", root=self._root, headers=headers, describe=error_message
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
        endpoint = "image_to_video" if request.has_image else "text_to_video"
        task_id, _ = await self._api.submit(
            f"{self._root}/v1/{endpoint}",
            json=build_body(request, provider_model, options),
            id_keys=("id",),
            rejected=lambda response: self._api.rejection(response, "submit"),
        )
        return ProviderJob(
            request_id=task_id,
            state={"task_id": task_id, "endpoint": endpoint, "model": provider_model},
        )

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send("status", "GET", self._task_url(job))
        if not response.is_success:
            raise self._api.poll_error(response, "status")
        return self._api.scrub_update(task_update(self._api.json_object(response, "status")))

    async def cancel(self, job: ProviderJob) -> None:
        """``DELETE`` the task; a task Runway no longer knows is not an error."""
        response = await self._api.send("cancel", "DELETE", self._task_url(job))
        self._api.settle_cancel(response, job.request_id)

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one output; Runway's URLs are pre-signed, so only our API origin gets the key."""
        return self._api.download(
            url,
            expired_note="the output URL has expired; Runway's last 24-48 hours",
            expired_statuses=(403, 404, 410),
        )

    # -- helpers -----------------------------------------------------------------------------

    def _task_url(self, job: ProviderJob) -> str:
        task_id = job.state.get("task_id") or job.request_id
        if not isinstance(task_id, str) or not task_id:
            raise GenerationFailed("Runway job has no task id to poll")
        return f"{self._root}/v1/tasks/{quote(task_id, safe='')}"


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> RunwayBackend:
    return RunwayBackend(http, settings)


# -- request and answer mapping (pure) -------------------------------------------------------


def build_body(
    request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``text_to_video`` / ``image_to_video`` body for one request."""
    body: dict[str, Any] = {"model": provider_model}
    if request.prompt:
        body["promptText"] = request.prompt
    image = request.image_data_url or request.image_url
    if image:
        body["promptImage"] = image
    if request.negative_prompt:
        body["negativePrompt"] = request.negative_prompt
    duration = request.duration_s
    if duration is None and isinstance(options.get("default_duration_s"), int | float):
        duration = float(options["default_duration_s"])
    if duration is not None:
        body["duration"] = max(1, round(duration))
    if request.seed is not None:
        body["seed"] = request.seed % 2**32
    body["ratio"] = _ratio(request, options)
    for key, target in _PASSTHROUGH.items():
        if request.extra.get(key) is not None:
            body[target] = request.extra[key]
    fixed = options.get("input")
    if isinstance(fixed, Mapping):
        body.update(fixed)
    return body


def _ratio(request: GenerationRequest, options: Mapping[str, Any]) -> str:
    raw = request.extra.get("ratio")
    if isinstance(raw, str) and _RATIO_RE.match(raw):
        return raw
    if request.resolution and (size := _SIZE_RE.match(request.resolution)):
        return f"{size.group(1)}:{size.group(2)}"
    if request.aspect_ratio:
        ratio = RATIOS.get((request.aspect_ratio, request.resolution)) or RATIOS.get(
            (request.aspect_ratio, None)
        )
        if ratio:
            return ratio
    return str(options.get("default_ratio") or "1280:720")


def task_update(task: Mapping[str, Any]) -> ProviderUpdate:
    """Map one ``GET /v1/tasks/{id}`` answer to our status."""
    raw = task.get("status")
    raw_status = raw if isinstance(raw, str) else repr(raw)
    status = STATUSES.get(raw_status, Status.IN_PROGRESS)
    if status is Status.IN_PROGRESS:
        progress = percent(task.get("progress"), scale=100)
        return ProviderUpdate(status=status, provider_status=raw_status, progress=progress)
    if status is Status.COMPLETED:
        output = task.get("output")
        urls = (
            tuple(u for u in output if isinstance(u, str) and u) if isinstance(output, list) else ()
        )
        if not urls:
            return ProviderUpdate(
                status=Status.FAILED,
                provider_status=raw_status,
                error="Runway reported success without any output URL",
            )
        return ProviderUpdate(
            status=status, provider_status=raw_status, progress=100.0, output_urls=urls
        )
    if status is Status.FAILED:
        code = task.get("failureCode")
        failure = str(task.get("failure") or "no reason given")
        code_text = code if isinstance(code, str) else ""
        is_nsfw = code_text.startswith(("SAFETY.", "INPUT_PREPROCESSING.SAFETY"))
        return ProviderUpdate(
            status=status,
            provider_status=raw_status,
            error=f"Runway task failed: {failure}" + (f" [{code_text}]" if code_text else ""),
            is_nsfw=is_nsfw,
            user_friendly_error=NSFW_MESSAGE if is_nsfw else None,
        )
    return ProviderUpdate(status=status, provider_status=raw_status)


# -- helpers -----------------------------------------------------------------------------------


def error_message(body: object) -> str | None:
    """Runway's error text: ``error`` (a string, or an object with a ``message``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None
