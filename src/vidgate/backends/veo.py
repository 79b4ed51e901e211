"""Google Veo on the Gemini API (``https://generativelanguage.googleapis.com``).

The protocol, as the ``google-genai`` SDK drives it in Gemini Developer API mode:

* submit: ``POST /v1beta/models/{model}:predictLongRunning`` with
  ``{"instances": [{"prompt", "image": {"bytesBase64Encoded", "mimeType"}}],
  "parameters": {"aspectRatio", "durationSeconds", "negativePrompt", "resolution", ...}}``;
  the answer is a long-running operation ``{"name": "models/{model}/operations/{id}"}``;
* poll: ``GET /v1beta/{name}``. ``done`` is absent until the operation ends; then it holds
  ``error`` (a ``google.rpc.Status``) or ``response.generateVideoResponse`` with
  ``generatedSamples[].video.uri`` and, when safety filters removed videos,
  ``raiMediaFilteredCount`` / ``raiMediaFilteredReasons``. There is no queue state and no
  progress;
* outputs: each ``uri`` is a ``files/{id}:download?alt=media`` URL that needs the API key;
  the Gemini API keeps generated files for two days;
* cancel: only the generic ``POST /v1beta/{name}:cancel`` exists, which answers
  ``UNIMPLEMENTED`` where a service does not support it. Cancel is therefore best-effort: an
  operation the provider will not stop is simply left to finish.

Auth is the ``x-goog-api-key`` header, never the ``?key=`` query parameter, so the key is
not part of any URL that could end up in an error message or a log.

Errors follow :mod:`vidgate.backends._http`: a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable` (``retry_after_s`` from ``Retry-After``,
else the body's ``google.rpc.RetryInfo``); a poll the key is refused for (401, 403, or 400
``API_KEY_INVALID``) is ``ProviderUnavailable`` too, since an operator can fix the key;
other refusals are :class:`GenerationFailed`.

Status mapping (``provider_status`` is ``done=false`` / ``done=true``):

=====================================================  =============================
operation                                              our status
=====================================================  =============================
``done`` absent, ``false`` or any other non-``true``   IN_PROGRESS
``done`` + ``error.code == 1`` (CANCELLED)             CANCELLED
``done`` + other ``error``                             FAILED (code and message kept)
``done`` + samples                                     COMPLETED (one URL per sample)
``done`` + no samples + ``raiMediaFilteredCount``      FAILED, ``is_nsfw``
``done`` + no samples, nothing else                    FAILED ("no video and no error")
=====================================================  =============================

Request mapping: ``prompt`` → ``instances[0].prompt``; ``image_data_url`` →
``instances[0].image``; ``negative_prompt`` → ``negativePrompt``; ``duration_s`` →
``durationSeconds`` (rounded to whole seconds); ``aspect_ratio`` → ``aspectRatio``
(``auto`` is left out); ``resolution`` → ``resolution`` (``1280x720`` becomes ``720p``).
``seed`` is dropped: the Gemini API does not accept it (only Vertex AI does). An
``image_url`` is refused, because the Gemini API takes images inline only. From ``extra``,
``enhancePrompt``, ``personGeneration`` and ``sampleCount`` (alias ``numberOfVideos``) are
passed through.

Model options (``[models.X].options``):

* ``parameters`` (object): merged into ``parameters`` last, so the operator's fixed values
  (e.g. ``{"personGeneration": "allow_adult", "durationSeconds": 8}``) win over the client's.

Provider options (``[providers.veo].options``):

* ``api_version`` (string, default ``v1beta``).
* ``min_poll_interval_s`` (number, default 1): the floor under the worker's poll cadence.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urljoin

import httpx

from vidgate.backends._answers import json_or_none, refuses_key, retry_after_s
from vidgate.backends._http import ProviderHTTP
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUpdate,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
NSFW_MESSAGE = (
    "The video was blocked by the provider's safety filters. Please change the prompt or "
    "image and try again."
)
_EXTRA_PARAMETERS = {
    "enhancePrompt": "enhancePrompt",
    "personGeneration": "personGeneration",
    "sampleCount": "sampleCount",
    "numberOfVideos": "sampleCount",
}
_SIZE_RE = re.compile(r"^(\d{3,4})x(\d{3,4})$")
_RETRY_DELAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_CANCELLED = 1  # google.rpc.Code.CANCELLED
_UNIMPLEMENTED = 501


class VeoBackend:
    """Drives Veo's long-running operations on the Gemini API."""

    idempotent_submits = False  # predictLongRunning documents no request id or idempotency key

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name or "veo"
        # No documented minimum; Google's own examples poll every 10-20 s.
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        self._root = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        version = str(settings.options.get("api_version") or "v1beta").strip("/")
        self._api_url = f"{self._root}/{version}"
        key = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="Veo",
            root=self._root,
            headers={"x-goog-api-key": key} if key else {},
            describe=google_message,
            retry_after=google_retry_after_s,
            key_refused=google_refuses_key,
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
        body = build_body(request, options)
        model = provider_model.removeprefix("models/")
        name, _ = await self._api.submit(
            f"{self._api_url}/models/{model}:predictLongRunning",
            json=body,
            id_keys=("name",),
            rejected=lambda response: self._api.rejection(response, "submit"),
        )
        return ProviderJob(request_id=name, state={"operation": name, "model": model})

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        name = _operation_name(job)
        response = await self._api.send("status", "GET", f"{self._api_url}/{name}")
        if not response.is_success:
            raise self._api.poll_error(response, "status")
        operation = self._api.json_object(response, "status")
        return self._api.scrub_update(operation_update(operation, self._root))

    async def cancel(self, job: ProviderJob) -> None:
        """Ask for cancellation; a refusal (e.g. ``UNIMPLEMENTED``) is logged, not raised."""
        name = _operation_name(job)
        response = await self._api.send("cancel", "POST", f"{self._api_url}/{name}:cancel", json={})
        self._api.settle_cancel(response, name, refusals=(_UNIMPLEMENTED,))

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one video; the key is sent only to the API's own origin."""
        return self._api.download(
            url, expired_note="the output is gone; the Gemini API keeps videos for two days"
        )


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> VeoBackend:
    return VeoBackend(http, settings)


# -- request and answer mapping (pure) -------------------------------------------------------


def build_body(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``predictLongRunning`` body for one request."""
    instance: dict[str, Any] = {}
    if request.prompt:
        instance["prompt"] = request.prompt
    if request.image_data_url:
        header, _, payload = request.image_data_url.partition(",")
        mime = header.removeprefix("data:").split(";", 1)[0] or "image/png"
        instance["image"] = {"bytesBase64Encoded": payload, "mimeType": mime}
    elif request.image_url:
        raise GenerationFailed(
            "Veo on the Gemini API takes images inline only; send imageDataUrl instead of imageUrl",
            user_friendly="This model needs the image sent as a data URL (imageDataUrl).",
        )
    parameters: dict[str, Any] = {}
    if request.aspect_ratio and request.aspect_ratio != "auto":
        parameters["aspectRatio"] = request.aspect_ratio
    if request.duration_s is not None:
        parameters["durationSeconds"] = max(1, round(request.duration_s))
    if request.negative_prompt:
        parameters["negativePrompt"] = request.negative_prompt
    if request.resolution:
        size = _SIZE_RE.match(request.resolution)
        parameters["resolution"] = (
            f"{min(int(size.group(1)), int(size.group(2)))}p" if size else request.resolution
        )
    for key, target in _EXTRA_PARAMETERS.items():
        if key in request.extra and request.extra[key] is not None:
            parameters[target] = request.extra[key]
    fixed = options.get("parameters")
    if isinstance(fixed, Mapping):
        parameters.update(fixed)
    body: dict[str, Any] = {"instances": [instance]}
    if parameters:
        body["parameters"] = parameters
    return body


def operation_update(operation: Mapping[str, Any], root: str) -> ProviderUpdate:
    """Map one ``google.longrunning.Operation`` to our status."""
    if operation.get("done") is not True:
        return ProviderUpdate(status=Status.IN_PROGRESS, provider_status="done=false")
    error = operation.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        text = str(error.get("message") or "no message")
        if code == _CANCELLED:
            return ProviderUpdate(
                status=Status.CANCELLED, provider_status="done=true", error=f"Veo: {text}"
            )
        return ProviderUpdate(
            status=Status.FAILED,
            provider_status="done=true",
            error=f"Veo operation failed (code {code}): {text}",
        )
    response = operation.get("response")
    result = response.get("generateVideoResponse") if isinstance(response, Mapping) else None
    result = result if isinstance(result, Mapping) else {}
    urls: list[str] = []
    samples = result.get("generatedSamples")
    for sample in samples if isinstance(samples, list) else []:
        video = sample.get("video") if isinstance(sample, Mapping) else None
        uri = video.get("uri") if isinstance(video, Mapping) else None
        if isinstance(uri, str) and uri:
            urls.append(urljoin(root + "/", uri))
    if urls:
        return ProviderUpdate(
            status=Status.COMPLETED,
            provider_status="done=true",
            progress=100.0,
            output_urls=tuple(urls),
        )
    filtered = result.get("raiMediaFilteredCount")
    if isinstance(filtered, int) and filtered > 0:
        reasons = result.get("raiMediaFilteredReasons")
        why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
        return ProviderUpdate(
            status=Status.FAILED,
            provider_status="done=true",
            error=f"Veo's safety filters removed {filtered} video(s)" + (f": {why}" if why else ""),
            is_nsfw=True,
            user_friendly_error=NSFW_MESSAGE,
        )
    return ProviderUpdate(
        status=Status.FAILED,
        provider_status="done=true",
        error="Veo finished the operation with no video and no error",
    )


# -- helpers -----------------------------------------------------------------------------------


def _operation_name(job: ProviderJob) -> str:
    name = job.state.get("operation") or job.request_id
    if not isinstance(name, str) or not name:
        raise GenerationFailed("Veo job has no operation name to poll")
    return name.strip("/")


def google_message(body: object) -> str | None:
    """The ``google.rpc.Status`` of an error answer: ``STATUS: message``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        status = error.get("status")
        return f"{status}: {error.get('message', '')}" if status else str(error.get("message", ""))
    return None


def google_retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` (seconds or HTTP date), else a ``google.rpc.RetryInfo`` delay."""
    seconds = retry_after_s(response.headers)
    if seconds is not None:
        return seconds
    for detail in _error_details(json_or_none(response)):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (m := _RETRY_DELAY_RE.match(delay)):
            return float(m.group(1))
    return None


def google_refuses_key(response: httpx.Response) -> bool:
    """401/403, or the 400 ``API_KEY_INVALID`` Google answers for a wrong key."""
    if refuses_key(response):
        return True
    return response.status_code == 400 and any(
        detail.get("reason") == "API_KEY_INVALID"
        for detail in _error_details(json_or_none(response))
    )


def _error_details(body: object) -> list[dict[str, Any]]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
