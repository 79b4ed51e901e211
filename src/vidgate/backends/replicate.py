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

Errors follow :mod:`vidgate.backends._http` (a lost or unclear submit answer, such as a drop
or a 502/504, is :class:`SubmitOutcomeUnknown`; a clear refusal (a 429, say) and other
passing faults are :class:`ProviderUnavailable` with ``retry_after_s`` from
``Retry-After``). Any other 4xx at submit raises :class:`GenerationFailed` (a "flagged as
sensitive" error sets ``is_nsfw``). While polling, a non-2xx answer other than 404 is also
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

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

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

ABORTED_FRIENDLY = "The provider could not start the video in time. Please try again."
_NSFW_RE = re.compile(
    r"\bE005\b|flagged as sensitive|\bnsfw\b|content polic|safety (?:checker|filter|system)",
    re.IGNORECASE,
)
_PROGRESS_RE = re.compile(r"(\d{1,3})%\|")
_ERROR_CHARS = 300


class ReplicateBackend:
    """Drives Replicate's predictions API through the given ``httpx.AsyncClient``."""

    idempotent_submits = False  # Replicate documents no idempotency key for creating predictions

    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.min_poll_interval_s = float(settings.options.get("min_poll_interval_s", 0.5))
        self._base_url = settings.base_url.rstrip("/")
        token = settings.api_key
        self._api = ProviderHTTP(
            http,
            settings,
            label="Replicate",
            root=self._base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
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
        url, body = self._create_target(provider_model.strip(), options)
        body["input"] = build_input(request, options)
        headers: dict[str, str] = {}
        if cancel_after := options.get("cancel_after"):
            headers["Cancel-After"] = str(cancel_after)
        prediction_id, data = await self._api.submit(
            url, json=body, id_keys=("id",), rejected=self._rejected, headers=headers
        )
        urls = data.get("urls")
        if not isinstance(urls, Mapping):
            urls = {}
        default = f"{self._base_url}/v1/predictions/{quote(prediction_id)}"
        state = {
            "get_url": str_or(urls.get("get"), default),
            "cancel_url": str_or(urls.get("cancel"), f"{default}/cancel"),
        }
        return ProviderJob(request_id=prediction_id, state=state)

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        return self._api.scrub_update(await self._status(job))

    async def _status(self, job: ProviderJob) -> ProviderUpdate:
        response = await self._api.send("status", "GET", self._url(job, "get_url", ""))
        if response.status_code in (404, 410):
            return failed_update("not_found", f"Replicate has no prediction {job.request_id}")
        if not response.is_success:
            raise self._api.unavailable(response, "status")
        data = self._api.json_object(response, "status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("Replicate status: the answer has no status")
        if raw == "starting":
            return ProviderUpdate(Status.IN_QUEUE, raw)
        if raw == "processing":
            return ProviderUpdate(Status.IN_PROGRESS, raw, progress=log_progress(data.get("logs")))
        if raw == "succeeded":
            urls = output_urls(data.get("output"))
            if not urls:
                removed = " (its data was removed)" if data.get("data_removed") else ""
                return failed_update(
                    raw, f"Replicate prediction succeeded without an output URL{removed}"
                )
            return ProviderUpdate(Status.COMPLETED, raw, progress=100.0, output_urls=urls)
        if raw == "failed":
            error = self._api.scrub(str(data.get("error") or "no error given"))[:_ERROR_CHARS]
            return failed_update(
                raw, f"Replicate prediction failed: {error}", nsfw=is_nsfw_error(error)
            )
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
        url = self._url(job, "cancel_url", "/cancel")
        response = await self._api.send("cancel", "POST", url)
        self._api.settle_cancel(response, job.request_id)

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one output; only ``base_url`` URLs (the Files API) get the token."""
        return self._api.download(url, expired_note="Replicate deletes outputs after an hour")

    # -- helpers ---------------------------------------------------------------------------

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

    def _url(self, job: ProviderJob, key: str, suffix: str) -> str:
        url = job.state.get(key)
        if isinstance(url, str) and url:
            return url
        return f"{self._base_url}/v1/predictions/{quote(job.request_id)}{suffix}"

    def _rejected(self, response: httpx.Response) -> GenerationFailed:
        detail = self._api.detail(response)
        nsfw = is_nsfw_error(detail)
        friendly = rejection_friendly(response.status_code, detail, nsfw=nsfw)
        return self._api.rejection(response, "submit", user_friendly=friendly, is_nsfw=nsfw)


def build(http: httpx.AsyncClient, settings: ProviderSettings) -> ReplicateBackend:
    return ReplicateBackend(http, settings)


# -- request and answer mapping --------------------------------------------------------------


def build_input(request: GenerationRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction input: mapped fields, then ``extra``, then ``options.input``."""
    return renamed_input(request, options, image_field="image", duration_format="number")


def describe_error(body: object) -> str | None:
    """Replicate's error detail: its ``title``, ``detail`` and ``error``."""
    if not isinstance(body, Mapping):
        return None
    return ": ".join(str(body[k]) for k in ("title", "detail", "error") if body.get(k)) or None


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


# -- small helpers ---------------------------------------------------------------------------


def _path(owner_name: str) -> str:
    return "/".join(quote(part, safe="") for part in owner_name.strip("/").split("/"))
