"""Replicate predictions adapter (``api.replicate.com/v1``).

The protocol, as Replicate documents it (replicate.com/docs: "Create a prediction",
"Prediction lifecycle", HTTP API reference, and the ``replicate`` Python client):

* **submit**, async mode (the default: no ``Prefer: wait`` header), with
  ``Authorization: Bearer <token>``:

  - ``POST /v1/models/{owner}/{name}/predictions`` ``{"input": {...}}`` for an official
    model (``provider_model = "owner/name"``);
  - ``POST /v1/predictions`` ``{"version": ..., "input": {...}}`` for a pinned version
    (``provider_model = "owner/name:<version>"`` or the ``version`` option);
  - ``POST /v1/deployments/{owner}/{name}/predictions`` for a deployment (option).

  The answer (201) is the prediction: ``id``, ``status: "starting"`` and ``urls.get`` /
  ``urls.cancel``, which are kept in the job state.
* **status** ``GET urls.get``: the prediction again. Progress is not a field; like the
  official clients we read the last tqdm-style ``NN%|`` line of ``logs``.
* **cancel** ``POST urls.cancel``: answers the prediction (``canceled`` if it was running).
* a **deadline** may be set with the ``Cancel-After`` header (option ``cancel_after``).
* outputs are URLs (a string or a list) on Replicate's file CDN, deleted after an hour;
  we add the token only to URLs on the ``base_url`` origin (the Files API).

Errors: a 429, 408/409/425 or 5xx answer, a timeout, a connection fault or a body that is
not JSON raises :class:`ProviderUnavailable` with ``retry_after_s`` from ``Retry-After``.
Any other 4xx at submit raises :class:`GenerationFailed` (a "flagged as sensitive" error
sets ``is_nsfw``). While polling, a non-2xx answer other than 404 is also
``ProviderUnavailable``: the job itself may be fine (a rotated key, say) and polling resumes
once the fault is gone. The API key is scrubbed from every message.

Status mapping (provider ``status`` -> ours):

================  ===================================================================
``starting``      ``IN_QUEUE`` (queued or booting; Replicate has no queue position)
``processing``    ``IN_PROGRESS`` (progress from the logs when there is one)
``succeeded``     ``COMPLETED`` with the output URLs (``FAILED`` if the data was removed)
``failed``        ``FAILED`` (``is_nsfw`` for "flagged as sensitive" / E005 / NSFW errors)
``canceled``      ``CANCELLED``
``aborted``       ``FAILED`` (the ``Cancel-After`` deadline passed before it started)
anything else     ``IN_PROGRESS`` (never terminal)
================  ===================================================================

Model options (the model's config section):

``input``
    table merged into the input last, so its fixed values win.
``rename``
    table ``our field -> input name``; an empty string drops the field. Our fields are
    ``prompt``, ``negative_prompt``, ``duration``, ``aspect_ratio``, ``resolution``,
    ``seed`` and ``image`` (an image URL or data URL; Replicate accepts both).
``duration_format``
    ``"number"`` (5, the default), ``"string"`` (``"5"``) or ``"seconds"`` (``"5s"``).
``version``
    a version id: create through ``/v1/predictions`` with that version.
``deployment``
    ``owner/name`` of a deployment to create through instead of the model.
``cancel_after``
    a duration such as ``"15m"``, sent as ``Cancel-After``.

Provider options (``[providers.NAME]``): ``min_poll_interval_s`` (default 0.5, the
official client's poll interval).
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
ABORTED_FRIENDLY = "The provider could not start the video in time. Please try again."
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
_NSFW_RE = re.compile(
    r"\bE005\b|flagged as sensitive|\bnsfw\b|content polic|safety (?:checker|filter|system)",
    re.IGNORECASE,
)
_PROGRESS_RE = re.compile(r"(\d{1,3})%\|")
_CHUNK_BYTES = 256 * 1024
_SNIPPET_CHARS = 300


class ReplicateBackend:
    """Drives Replicate's predictions API through the given ``httpx.AsyncClient``."""

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
        url, body = self._create_target(provider_model.strip(), options)
        body["input"] = build_input(request, options)
        headers = self._auth_headers()
        if cancel_after := options.get("cancel_after"):
            headers["Cancel-After"] = str(cancel_after)
        response = await self._send("POST", url, "submit", json=body, headers=headers)
        if not response.is_success:
            raise self._submit_error(response)
        data = self._json(response, "submit")
        prediction_id = data.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ProviderUnavailable("replicate submit: the answer has no prediction id")
        urls = data.get("urls")
        if not isinstance(urls, Mapping):
            urls = {}
        default = f"{self._base_url}/v1/predictions/{quote(prediction_id)}"
        state = {
            "get_url": _str_or(urls.get("get"), default),
            "cancel_url": _str_or(urls.get("cancel"), f"{default}/cancel"),
        }
        return ProviderJob(request_id=prediction_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._send(
            "GET", self._url(job, "get_url", ""), "status", headers=self._auth_headers()
        )
        if response.status_code in (404, 410):
            return _failed("not_found", f"Replicate has no prediction {job.request_id}")
        if not response.is_success:
            raise self._unavailable(response, "status")
        data = self._json(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("replicate status: the answer has no status")
        if raw == "starting":
            return ProviderUpdate(Status.IN_QUEUE, raw)
        if raw == "processing":
            return ProviderUpdate(Status.IN_PROGRESS, raw, progress=log_progress(data.get("logs")))
        if raw == "succeeded":
            urls = output_urls(data.get("output"))
            if not urls:
                removed = " (its data was removed)" if data.get("data_removed") else ""
                return _failed(
                    raw, f"Replicate prediction succeeded without an output URL{removed}"
                )
            return ProviderUpdate(Status.COMPLETED, raw, progress=100.0, output_urls=urls)
        if raw == "failed":
            error = self._redact(str(data.get("error") or "no error given"))[:_SNIPPET_CHARS]
            return _failed(raw, f"Replicate prediction failed: {error}", nsfw=is_nsfw_error(error))
        if raw == "canceled":
            return ProviderUpdate(Status.CANCELLED, raw)
        if raw == "aborted":
            return ProviderUpdate(
                Status.FAILED,
                raw,
                error="Replicate aborted the prediction: its deadline passed before it started",
                user_friendly_error=ABORTED_FRIENDLY,
            )
        return ProviderUpdate(Status.IN_PROGRESS, raw)

    async def cancel(self, job: ProviderJob) -> None:
        """Ask Replicate to cancel; a finished or unknown prediction is fine.

        Raises :class:`ProviderUnavailable` on a passing fault, so the caller may try again.
        """
        response = await self._send(
            "POST", self._url(job, "cancel_url", "/cancel"), "cancel", headers=self._auth_headers()
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
                f"replicate download: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"replicate download: {type(exc).__name__}: {exc}")
            ) from exc

    # -- HTTP plumbing ---------------------------------------------------------------------

    def _create_target(
        self, provider_model: str, options: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        deployment = options.get("deployment")
        if deployment:
            return f"{self._base_url}/v1/deployments/{_path(str(deployment))}/predictions", {}
        model, _, version = provider_model.partition(":")
        version = str(options.get("version") or version)
        if version:
            return f"{self._base_url}/v1/predictions", {"version": version}
        return f"{self._base_url}/v1/models/{_path(model)}/predictions", {}

    async def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, timeout=self._settings.timeout_s, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"replicate {what}: no answer within {self._settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                self._redact(f"replicate {what}: {type(exc).__name__}: {exc}")
            ) from exc

    def _auth_headers(self) -> dict[str, str]:
        token = self._settings.api_key
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _url(self, job: ProviderJob, key: str, suffix: str) -> str:
        url = job.state.get(key)
        if isinstance(url, str) and url:
            return url
        return f"{self._base_url}/v1/predictions/{quote(job.request_id)}{suffix}"

    def _json(self, response: httpx.Response, what: str) -> Mapping[str, Any]:
        data = _json_or_none(response)
        if not isinstance(data, Mapping):
            raise ProviderUnavailable(
                f"replicate {what}: HTTP {response.status_code} with a body that is not a JSON "
                f"object: {self._snippet(response)}",
                retry_after_s=retry_after_s(response.headers),
            )
        return data

    def _submit_error(self, response: httpx.Response) -> Exception:
        code = response.status_code
        if _is_transient(code):
            return self._unavailable(response, "submit")
        detail = self._describe(response)
        nsfw = is_nsfw_error(detail)
        friendly = FAILED_FRIENDLY
        if nsfw:
            friendly = NSFW_FRIENDLY
        elif code in (400, 422) and detail:
            friendly = f"The provider rejected the request: {detail}"
        return GenerationFailed(
            f"Replicate rejected the request (HTTP {code}): {detail}",
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
            f"Replicate output {where} is not available (HTTP {code}): {self._describe(response)}",
            user_friendly=EXPIRED_FRIENDLY,
            provider_status=str(code),
        )

    def _unavailable(self, response: httpx.Response, what: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"replicate {what}: HTTP {response.status_code}: {self._describe(response)}",
            retry_after_s=retry_after_s(response.headers),
        )

    def _describe(self, response: httpx.Response) -> str:
        """A short, key-free account of an error body (Replicate's ``title``/``detail``)."""
        body = _json_or_none(response)
        if isinstance(body, Mapping):
            parts = [str(body[k]) for k in ("title", "detail", "error") if body.get(k)]
            if parts:
                return self._redact(": ".join(parts))[:_SNIPPET_CHARS]
        return self._snippet(response)

    def _snippet(self, response: httpx.Response) -> str:
        return self._redact(response.text[:_SNIPPET_CHARS])

    def _redact(self, text: str) -> str:
        key = self._settings.api_key
        return text.replace(key, "***") if key else text


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> ReplicateBackend:
    return ReplicateBackend(http, settings)


# -- request and answer mapping --------------------------------------------------------------


def build_input(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction input: mapped fields, then ``extra``, then ``options.input``."""
    rename = _table(options, "rename")
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration": format_duration(request.duration_s, options.get("duration_format", "number")),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "seed": request.seed,
        "image": request.image_url or request.image_data_url,
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


def output_urls(output: object) -> tuple[str, ...]:
    """The http(s) URLs in a prediction's ``output`` (a string, a list, or a dict of them)."""
    found: list[str] = []

    def walk(value: object, depth: int) -> None:
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            found.append(value)
        elif isinstance(value, list) and depth < 3:
            for item in value:
                walk(item, depth + 1)
        elif isinstance(value, Mapping) and depth < 3:
            for item in value.values():
                walk(item, depth + 1)

    walk(output, 0)
    return tuple(dict.fromkeys(found))


def log_progress(logs: object) -> float | None:
    """The last tqdm percentage (``" 45%|####  | 45/100"``) in the logs, if any."""
    if not isinstance(logs, str):
        return None
    matches = _PROGRESS_RE.findall(logs)
    return float(min(100, int(matches[-1]))) if matches else None


def is_nsfw_error(error: str) -> bool:
    return bool(_NSFW_RE.search(error))


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


def _path(owner_name: str) -> str:
    return "/".join(quote(part, safe="") for part in owner_name.strip("/").split("/"))


def _str_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default
