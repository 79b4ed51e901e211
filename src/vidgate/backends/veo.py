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

import dataclasses
import logging
import math
import re
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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
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


class VeoBackend:
    """Drives Veo's long-running operations on the Gemini API."""

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name or "veo"
        self._http = http
        self._settings = settings
        # No documented minimum; Google's own examples poll every 10-20 s.
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 1.0))
        self._root = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        version = str(settings.options.get("api_version") or "v1beta").strip("/")
        self._api = f"{self._root}/{version}"
        self._timeout = httpx.Timeout(settings.timeout_s)

    # -- the port ----------------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
    ) -> ProviderJob:
        body = build_body(request, options)
        model = provider_model.removeprefix("models/")
        response = await self._send(
            "submit", "POST", f"{self._api}/models/{model}:predictLongRunning", json=body
        )
        if response.is_success:
            data = self._json(response, "submit")
            name = data.get("name")
            if isinstance(name, str) and name:
                return ProviderJob(request_id=name, state={"operation": name, "model": model})
            raise ProviderUnavailable(self._clean("Veo submit: the answer has no operation name"))
        raise self._http_error("submit", response)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        name = _operation_name(job)
        response = await self._send("status", "GET", f"{self._api}/{name}")
        if not response.is_success:
            raise self._http_error("status", response)
        return self._clean_update(operation_update(self._json(response, "status"), self._root))

    async def cancel(self, job: ProviderJob) -> None:
        """Ask for cancellation; a refusal (e.g. ``UNIMPLEMENTED``) is logged, not raised."""
        name = _operation_name(job)
        response = await self._send("cancel", "POST", f"{self._api}/{name}:cancel", json={})
        if response.is_success:
            return
        if response.status_code != 501 and _transient(response.status_code):
            raise self._http_error("cancel", response)
        event(
            log,
            "provider.cancel_refused",
            provider=self.name,
            request_id=name,
            http_status=response.status_code,
        )

    async def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one video; the key is sent only to the API's own origin."""
        target = urljoin(self._root + "/", url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = self._auth_headers() if _same_origin(target, self._root) else {}
            request = self._http.build_request(
                "GET", target, headers=headers, timeout=self._timeout
            )
            try:
                response = await self._http.send(request, stream=True, follow_redirects=False)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                raise ProviderUnavailable(self._clean(f"Veo download: {_describe(exc)}")) from exc
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
                raise ProviderUnavailable(self._clean(f"Veo download: {_describe(exc)}")) from exc
            finally:
                await response.aclose()
        raise ProviderUnavailable("Veo download: too many redirects")

    # -- HTTP --------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"x-goog-api-key": key} if key else {}

    async def _send(
        self, operation: str, method: str, url: str, json: object = None
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method, url, json=json, headers=self._auth_headers(), timeout=self._timeout
            )
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise ProviderUnavailable(self._clean(f"Veo {operation}: {_describe(exc)}")) from exc

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                self._clean(
                    f"Veo {operation}: HTTP {response.status_code} answer is not a JSON object: "
                    f"{response.text[:200]!r}"
                )
            )
        return data

    def _http_error(
        self, operation: str, response: httpx.Response, *, gone_is_final: bool = False
    ) -> GenerationFailed | ProviderUnavailable:
        status = response.status_code
        message = self._clean(f"Veo {operation}: HTTP {status}: {_google_message(response)}")
        if _transient(status):
            return ProviderUnavailable(message, retry_after_s=_retry_after(response))
        if gone_is_final and status in (404, 410):
            message += " (the output is gone; the Gemini API keeps videos for two days)"
        return GenerationFailed(message, provider_status=f"HTTP {status}")

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


def _transient(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _same_origin(url: str, root: str) -> bool:
    a, b = urlsplit(url), urlsplit(root)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _google_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return repr(response.text[:200])
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        status = error.get("status")
        return f"{status + ': ' if status else ''}{error.get('message', '')}"[:500]
    return repr(response.text[:200])


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` (seconds or HTTP date), else a ``google.rpc.RetryInfo`` delay."""
    header = response.headers.get("retry-after")
    if header:
        seconds = _retry_after_header(header)
        if seconds is not None:
            return seconds
    try:
        data = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and (m := _RETRY_DELAY_RE.match(delay)):
            return float(m.group(1))
    return None


def _retry_after_header(value: str) -> float | None:
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
