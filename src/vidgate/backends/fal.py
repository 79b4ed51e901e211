"""fal.ai queue adapter (``queue.fal.run``).

The protocol, as fal documents it (docs.fal.ai "Asynchronous inference" / Inference API
reference, and the ``fal_client`` package):

* **submit** ``POST {base_url}/{model_id}`` with the model's input as the JSON body and
  ``Authorization: Key <key>``. The answer holds ``request_id`` and the ``status_url``,
  ``response_url`` and ``cancel_url`` to use afterwards: those carry only owner/app, not the
  endpoint path, so they are kept in the job state rather than rebuilt.
* **status** ``GET status_url``: HTTP 202 while ``IN_QUEUE`` (with a 0-based
  ``queue_position``) or ``IN_PROGRESS``, 200 once ``COMPLETED``. There is no failed status:
  a failed request is ``COMPLETED`` and carries ``error`` and ``error_type``.
* **result** ``GET response_url``: the status code and body the model returned. Success is
  the output JSON (video models answer ``{"video": {"url": ...}}``); a model error is
  ``{"detail": [{"type": "content_policy_violation", "msg": ...}]}`` (422 for a refusal); a
  request error is ``{"detail": "...", "error_type": "..."}`` plus ``X-Fal-Error-Type``.
* **cancel** ``PUT cancel_url``: ``CANCELLATION_REQUESTED`` (202), ``ALREADY_COMPLETED``
  (400) or ``NOT_FOUND`` (404).
* outputs live on fal's CDN, which needs no key (we add the key only to URLs on the
  ``base_url`` origin).

Errors follow :mod:`vidgate.backends._http` (a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable` with ``retry_after_s`` from
``Retry-After``). Any other 4xx at submit raises :class:`GenerationFailed` (a
``content_policy_violation`` detail sets ``is_nsfw``). While polling, a non-2xx answer other
than 404 is also ``ProviderUnavailable``: the job itself may be fine (a rotated key, say)
and polling resumes once the fault is gone. The API key is scrubbed from every message.

Status mapping (provider ``status`` -> ours):

=============================  ===========================================================
``IN_QUEUE``                   ``IN_QUEUE`` (``queue_position`` passed on)
``IN_PROGRESS``                ``IN_PROGRESS``
``COMPLETED`` + result 2xx     ``COMPLETED`` (progress 100, video URLs from the result)
``COMPLETED`` + model error    ``FAILED`` (``is_nsfw`` for ``content_policy_violation``)
``COMPLETED`` + client_cancel  ``CANCELLED``
``FAILED`` / ``CANCELED``      ``FAILED`` / ``CANCELLED`` (not documented; handled anyway)
anything else                  ``IN_PROGRESS`` (never terminal)
=============================  ===========================================================

Model options (the model's config section):

``input``
    table merged into the input last, so its fixed values win.
``rename``
    table ``our field -> fal field``; an empty string drops the field. Our fields are
    ``prompt``, ``negative_prompt``, ``duration``, ``aspect_ratio``, ``resolution``,
    ``seed`` and ``image_url`` (an image URL or data URL; fal accepts both).
``duration_format``
    ``"string"`` (``"5"``, the default, as most fal video models want), ``"number"`` (5)
    or ``"seconds"`` (``"5s"``).
``priority``
    ``"normal"`` or ``"low"``, sent as ``X-Fal-Queue-Priority``.
``start_timeout_s``
    sent as ``X-Fal-Request-Timeout``: fal gives up if the request has not started by then.

Provider options (``[providers.NAME]``): ``min_poll_interval_s`` (default 0.5).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from vidgate.backends._answers import is_transient, json_or_none, refuses_key
from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import failed_update, rejection_friendly, renamed_input, str_or
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

_POLICY_TYPES = frozenset({"content_policy_violation"})
_CANCELLED_TYPES = frozenset({"client_cancelled"})


class FalBackend:
    """Drives fal's queue API through the given ``httpx.AsyncClient``."""

    idempotent_submits = False  # fal documents no idempotency key for queue submits

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 0.5))
        self._base_url = settings.base_url.rstrip("/")
        key = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="fal",
            root=self._base_url,
            headers={"Authorization": f"Key {key}"} if key else {},
            describe=describe_error,
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
        model = provider_model.strip("/")
        headers: dict[str, str] = {}
        if priority := options.get("priority"):
            headers["X-Fal-Queue-Priority"] = str(priority)
        if start_timeout := options.get("start_timeout_s"):
            headers["X-Fal-Request-Timeout"] = str(start_timeout)
        request_id, data = await self._api.submit(
            f"{self._base_url}/{model}",
            json=build_input(request, options),
            id_keys=("request_id",),
            rejected=self._rejected,
            headers=headers,
        )
        base = f"{self._base_url}/{_app_of(model)}/requests/{request_id}"
        state = {
            "model": model,
            "status_url": str_or(data.get("status_url"), f"{base}/status"),
            "response_url": str_or(data.get("response_url"), base),
            "cancel_url": str_or(data.get("cancel_url"), f"{base}/cancel"),
        }
        return ProviderJob(request_id=request_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        return self._api.scrub_update(await self._status(job))

    async def _status(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send("status", "GET", self._url(job, "status_url", "/status"))
        if response.status_code in (404, 410):
            return failed_update(
                "NOT_FOUND", f"fal has no request {job.request_id} (expired or never created)"
            )
        if response.status_code not in (200, 202):
            raise self._api.unavailable(response, "status")
        data = self._api.json_object(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("fal status: the answer has no status")
        if raw == "IN_QUEUE":
            return ProviderUpdate(
                Status.IN_QUEUE, raw, queue_position=_int_or_none(data.get("queue_position"))
            )
        if raw == "IN_PROGRESS":
            return ProviderUpdate(Status.IN_PROGRESS, raw)
        if raw == "COMPLETED":
            return await self._completed(job, data)
        if raw in ("CANCELED", "CANCELLED"):
            return ProviderUpdate(Status.CANCELLED, raw)
        if raw == "FAILED":
            error_type = str_or(data.get("error_type"), "")
            return failed_update(
                raw,
                f"fal request failed: {data.get('error')}",
                nsfw=error_type in _POLICY_TYPES,
            )
        return ProviderUpdate(Status.IN_PROGRESS, raw)

    async def cancel(self, job: ProviderJob) -> None:
        """Ask fal to cancel; ``ALREADY_COMPLETED`` and ``NOT_FOUND`` are fine.

        Raises :class:`ProviderUnavailable` on a passing fault, so the caller may try again.
        """
        url = self._url(job, "cancel_url", "/cancel")
        response = await self._api.send("cancel", "PUT", url)
        self._api.settle_cancel(response, job.request_id)

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one output; fal's CDN needs no key, so only ``base_url`` URLs get it."""
        return self._api.download(url, expired_note="fal no longer serves this file")

    # -- completion ------------------------------------------------------------------------

    async def _completed(self, job: ProviderJob, status: Mapping[str, Any]) -> ProviderUpdate:
        error = status.get("error")
        error_type = str_or(status.get("error_type"), "")
        if error_type in _CANCELLED_TYPES:
            return ProviderUpdate(Status.CANCELLED, "COMPLETED", error=str(error))
        response = await self._api.send("result", "GET", self._url(job, "response_url", ""))
        if response.is_success:
            urls = find_video_urls(self._api.json_object(response, "result"))
            if not urls:
                return failed_update("COMPLETED", "fal completed the request without a video URL")
            return ProviderUpdate(Status.COMPLETED, "COMPLETED", progress=100.0, output_urls=urls)

        body = json_or_none(response)
        types = set(_detail_types(body))
        types.add(error_type)
        types.add(response.headers.get("x-fal-error-type", ""))
        if isinstance(body, Mapping):
            types.add(str_or(body.get("error_type"), ""))
        if types & _CANCELLED_TYPES:
            return ProviderUpdate(Status.CANCELLED, "COMPLETED", error="cancelled at fal")
        code = response.status_code
        if not error and (is_transient(code) or refuses_key(response)):
            # The status reported no failure: this is a fault fetching the result.
            raise self._api.unavailable(response, "result")
        detail = self._api.detail(response) or str(error)
        kind = ", ".join(sorted(t for t in types if t))
        message = f"fal request failed (HTTP {code}{', ' + kind if kind else ''})"
        return failed_update("COMPLETED", f"{message}: {detail}", nsfw=bool(types & _POLICY_TYPES))

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, job: ProviderJob, key: str, suffix: str) -> str:
        url = job.state.get(key)
        if isinstance(url, str) and url:
            return url
        app = _app_of(str(job.state.get("model", "")))
        return f"{self._base_url}/{app}/requests/{job.request_id}{suffix}"

    def _rejected(self, response: httpx.Response) -> GenerationFailed:
        nsfw = bool(set(_detail_types(json_or_none(response))) & _POLICY_TYPES)
        friendly = rejection_friendly(response.status_code, self._api.detail(response), nsfw=nsfw)
        return self._api.rejection(response, "submit", user_friendly=friendly, is_nsfw=nsfw)


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> FalBackend:
    return FalBackend(http, settings)


# -- request and answer mapping --------------------------------------------------------------


def build_input(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The fal input for a request: mapped fields, then ``extra``, then ``options.input``."""
    return renamed_input(request, options, image_field="image_url", duration_format="string")


def describe_error(body: object) -> str | None:
    """fal's error detail: ``detail`` (text, or a list of ``{type, msg}``), ``error``..."""
    if not isinstance(body, Mapping):
        return None
    detail = body.get("detail", body.get("error", body.get("status")))
    if isinstance(detail, list):
        return "; ".join(
            f"{d.get('type', '?')}: {d.get('msg', '')}".strip()
            for d in detail
            if isinstance(d, Mapping)
        )
    return None if detail is None else str(detail)


def find_video_urls(result: Mapping[str, Any]) -> tuple[str, ...]:
    """Video URLs in a result: ``video.url``, ``videos[].url``, else any video file in it."""
    found: list[str] = []
    video = result.get("video")
    if isinstance(video, Mapping) and isinstance(video.get("url"), str):
        found.append(video["url"])
    videos = result.get("videos")
    if isinstance(videos, list):
        found.extend(
            v["url"] for v in videos if isinstance(v, Mapping) and isinstance(v.get("url"), str)
        )
    if not found:
        found.extend(_video_files(result))
    return tuple(dict.fromkeys(found))


def _video_files(value: object, depth: int = 0) -> list[str]:
    if depth > 4:
        return []
    if isinstance(value, Mapping):
        url, kind = value.get("url"), str(value.get("content_type", ""))
        if isinstance(url, str) and (
            kind.startswith("video/") or urlsplit(url).path.lower().endswith((".mp4", ".webm"))
        ):
            return [url]
        return [u for v in value.values() for u in _video_files(v, depth + 1)]
    if isinstance(value, list):
        return [u for v in value for u in _video_files(v, depth + 1)]
    return []


def _detail_types(body: object) -> list[str]:
    if isinstance(body, list):
        detail: object = body
    elif isinstance(body, Mapping):
        detail = body.get("detail")
    else:
        return []
    if not isinstance(detail, list):
        return []
    return [str(d.get("type")) for d in detail if isinstance(d, Mapping) and d.get("type")]


def _app_of(model: str) -> str:
    """``owner/app`` of a model id (``owner/app/path`` -> ``owner/app``)."""
    parts = model.strip("/").split("/")
    if parts and parts[0] in ("workflows", "comfy"):
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
