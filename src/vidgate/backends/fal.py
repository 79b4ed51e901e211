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

Errors: a 429, 408/409/425 or 5xx answer, a timeout, a connection fault or a body that is
not JSON raises :class:`ProviderUnavailable` with ``retry_after_s`` from ``Retry-After``.
Any other 4xx at submit raises :class:`GenerationFailed` (a ``content_policy_violation``
detail sets ``is_nsfw``). While polling, a non-2xx answer other than 404 is also
``ProviderUnavailable``: the job itself may be fine (a rotated key, say) and polling resumes
once the fault is gone. The API key is scrubbed from every message.

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

import email.utils
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

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
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
_POLICY_TYPES = frozenset({"content_policy_violation"})
_CANCELLED_TYPES = frozenset({"client_cancelled"})
_CHUNK_BYTES = 256 * 1024
_SNIPPET_CHARS = 300


class FalBackend:
    """Drives fal's queue API through the given ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 0.5))
        self._http = http
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")

    # -- the RemoteBackend port -------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, provider_model: str, options: Mapping[str, Any]
    ) -> ProviderJob:
        model = provider_model.strip("/")
        headers = self._auth_headers()
        if priority := options.get("priority"):
            headers["X-Fal-Queue-Priority"] = str(priority)
        if start_timeout := options.get("start_timeout_s"):
            headers["X-Fal-Request-Timeout"] = str(start_timeout)
        response = await self._send(
            "POST",
            f"{self._base_url}/{model}",
            "submit",
            json=build_input(request, options),
            headers=headers,
        )
        if not response.is_success:
            raise self._submit_error(response)
        data = self._json(response, "submit")
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable("fal submit: the answer has no request_id")
        app = _app_of(model)
        base = f"{self._base_url}/{app}/requests/{request_id}"
        state = {
            "model": model,
            "status_url": _str_or(data.get("status_url"), f"{base}/status"),
            "response_url": _str_or(data.get("response_url"), base),
            "cancel_url": _str_or(data.get("cancel_url"), f"{base}/cancel"),
        }
        return ProviderJob(request_id=request_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._send(
            "GET", self._url(job, "status_url", "/status"), "status", headers=self._auth_headers()
        )
        if response.status_code in (404, 410):
            return _failed(
                "NOT_FOUND", f"fal has no request {job.request_id} (expired or never created)"
            )
        if response.status_code not in (200, 202):
            raise self._unavailable(response, "status")
        data = self._json(response, "status")
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
            error_type = _str_or(data.get("error_type"), "")
            return _failed(
                raw,
                f"fal request failed: {self._redact(str(data.get('error')))}",
                nsfw=error_type in _POLICY_TYPES,
            )
        return ProviderUpdate(Status.IN_PROGRESS, raw)

    async def cancel(self, job: ProviderJob) -> None:
        """Ask fal to cancel; ``ALREADY_COMPLETED`` and ``NOT_FOUND`` are fine.

        Raises :class:`ProviderUnavailable` on a passing fault, so the caller may try again.
        """
        response = await self._send(
            "PUT", self._url(job, "cancel_url", "/cancel"), "cancel", headers=self._auth_headers()
        )
        if response.is_success or not _is_transient(response.status_code):
            return
        raise self._unavailable(response, "cancel")

    async def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        headers = self._auth_headers() if _same_origin(url, self._base_url) else {}
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
                f"fal download: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"fal download: {type(exc).__name__}: {exc}")
            ) from exc

    # -- completion ------------------------------------------------------------------------

    async def _completed(self, job: ProviderJob, status: Mapping[str, Any]) -> ProviderUpdate:
        error = status.get("error")
        error_type = _str_or(status.get("error_type"), "")
        if error_type in _CANCELLED_TYPES:
            return ProviderUpdate(Status.CANCELLED, "COMPLETED", error=self._redact(str(error)))
        response = await self._send(
            "GET", self._url(job, "response_url", ""), "result", headers=self._auth_headers()
        )
        if response.is_success:
            urls = find_video_urls(self._json(response, "result"))
            if not urls:
                return _failed("COMPLETED", "fal completed the request without a video URL")
            return ProviderUpdate(Status.COMPLETED, "COMPLETED", progress=100.0, output_urls=urls)

        body = _json_or_none(response)
        types = set(_detail_types(body))
        types.add(error_type)
        types.add(response.headers.get("x-fal-error-type", ""))
        if isinstance(body, Mapping):
            types.add(_str_or(body.get("error_type"), ""))
        if types & _CANCELLED_TYPES:
            return ProviderUpdate(Status.CANCELLED, "COMPLETED", error="cancelled at fal")
        code = response.status_code
        if not error and (_is_transient(code) or code in (401, 403)):
            # The status reported no failure: this is a fault fetching the result.
            raise self._unavailable(response, "result")
        detail = self._describe(response) or self._redact(str(error))
        kind = ", ".join(sorted(t for t in types if t))
        message = f"fal request failed (HTTP {code}{', ' + kind if kind else ''})"
        return _failed("COMPLETED", f"{message}: {detail}", nsfw=bool(types & _POLICY_TYPES))

    # -- HTTP plumbing ---------------------------------------------------------------------

    async def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, timeout=self._settings.timeout_s, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"fal {what}: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"fal {what}: {type(exc).__name__}: {exc}")
            ) from exc

    def _auth_headers(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"Authorization": f"Key {key}"} if key else {}

    def _url(self, job: ProviderJob, key: str, suffix: str) -> str:
        url = job.state.get(key)
        if isinstance(url, str) and url:
            return url
        app = _app_of(str(job.state.get("model", "")))
        return f"{self._base_url}/{app}/requests/{job.request_id}{suffix}"

    def _json(self, response: httpx.Response, what: str) -> Mapping[str, Any]:
        data = _json_or_none(response)
        if not isinstance(data, Mapping):
            raise ProviderUnavailable(
                f"fal {what}: HTTP {response.status_code} with a body that is not a JSON object: "
                f"{self._snippet(response)}",
                retry_after_s=retry_after_s(response.headers),
            )
        return data

    def _submit_error(self, response: httpx.Response) -> Exception:
        code = response.status_code
        if _is_transient(code):
            return self._unavailable(response, "submit")
        body = _json_or_none(response)
        detail = self._describe(response)
        nsfw = bool(set(_detail_types(body)) & _POLICY_TYPES)
        friendly = FAILED_FRIENDLY
        if nsfw:
            friendly = NSFW_FRIENDLY
        elif code in (400, 422) and detail:
            friendly = f"The provider rejected the request: {detail}"
        return GenerationFailed(
            f"fal rejected the request (HTTP {code}): {detail}",
            user_friendly=friendly,
            is_nsfw=nsfw,
            provider_status=str(code),
        )

    def _download_error(self, response: httpx.Response, url: str) -> Exception:
        code = response.status_code
        where = self._redact(urlsplit(url)._replace(query="").geturl())
        if _is_transient(code):
            return self._unavailable(response, "download")
        return GenerationFailed(
            f"fal output {where} is not available (HTTP {code}): {self._describe(response)}",
            user_friendly=EXPIRED_FRIENDLY,
            provider_status=str(code),
        )

    def _unavailable(self, response: httpx.Response, what: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"fal {what}: HTTP {response.status_code}: {self._describe(response)}",
            retry_after_s=retry_after_s(response.headers),
        )

    def _describe(self, response: httpx.Response) -> str:
        """A short, key-free account of an error body."""
        body = _json_or_none(response)
        if isinstance(body, Mapping):
            detail = body.get("detail", body.get("error", body.get("status")))
            if isinstance(detail, list):
                parts = [
                    f"{d.get('type', '?')}: {d.get('msg', '')}".strip()
                    for d in detail
                    if isinstance(d, Mapping)
                ]
                return self._redact("; ".join(parts))[:_SNIPPET_CHARS]
            if detail is not None:
                return self._redact(str(detail))[:_SNIPPET_CHARS]
        return self._snippet(response)

    def _snippet(self, response: httpx.Response) -> str:
        return self._redact(response.text[:_SNIPPET_CHARS])

    def _redact(self, text: str) -> str:
        key = self._settings.api_key
        return text.replace(key, "***") if key else text


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> FalBackend:
    return FalBackend(http, settings)


# -- request mapping -------------------------------------------------------------------------


def build_input(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The fal input for a request: mapped fields, then ``extra``, then ``options.input``."""
    rename = _table(options, "rename")
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration": format_duration(request.duration_s, options.get("duration_format", "string")),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "seed": request.seed,
        "image_url": request.image_url or request.image_data_url,
    }
    body: dict[str, Any] = {}
    for field, value in fields.items():
        target = rename.get(field, field)
        if value is not None and target:
            body[str(target)] = value
    body.update(request.extra)
    body.update(_table(options, "input"))
    return body


def format_duration(seconds: float | None, style: object) -> str | int | float | None:
    if seconds is None:
        return None
    number: int | float = int(seconds) if float(seconds).is_integer() else seconds
    if style == "number":
        return number
    if style == "seconds":
        return f"{number}s"
    if style == "string":
        return str(number)
    raise GenerationFailed(
        f"model option duration_format must be string, number or seconds; got {style!r}",
        user_friendly=FAILED_FRIENDLY,
    )


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
    """``Retry-After`` as seconds (a number or an HTTP date), else ``None``."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _failed(raw: str, error: str, *, nsfw: bool = False) -> ProviderUpdate:
    return ProviderUpdate(
        Status.FAILED,
        raw,
        error=error,
        is_nsfw=nsfw,
        user_friendly_error=NSFW_FRIENDLY if nsfw else FAILED_FRIENDLY,
    )


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


def _app_of(model: str) -> str:
    """``owner/app`` of a model id (``owner/app/path`` -> ``owner/app``)."""
    parts = model.strip("/").split("/")
    if parts and parts[0] in ("workflows", "comfy"):
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def _str_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
