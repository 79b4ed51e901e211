"""Reading the server's answers. Pure functions: bodies and headers in, typed values out.

They are tolerant on purpose, because the same API shape is served with variations: the
hosted API may send relative video URLs, lower-case statuses, ``CANCELED`` with one L,
a submit answer with ``id`` but no ``runId``, the nested or the flat status shape, and any
field may be missing.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

from vidgate.client._errors import (
    APIStatusError,
    AuthenticationError,
    ContentPolicyError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnexpectedResponseError,
)
from vidgate.client._types import RunStatus, Submission, VideoModel, VideoStatus

# Every spelling seen in the wild, keyed by its normalised form (lower case, ``_``).
_STATUS_NAMES: dict[str, RunStatus] = {
    "in_queue": RunStatus.IN_QUEUE,
    "queued": RunStatus.IN_QUEUE,
    "pending": RunStatus.IN_QUEUE,
    "in_progress": RunStatus.IN_PROGRESS,
    "processing": RunStatus.IN_PROGRESS,
    "running": RunStatus.IN_PROGRESS,
    "generating": RunStatus.IN_PROGRESS,
    "delivering": RunStatus.IN_PROGRESS,
    "completed": RunStatus.COMPLETED,
    "succeeded": RunStatus.COMPLETED,
    "success": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "failure": RunStatus.FAILED,
    "error": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "canceled": RunStatus.CANCELLED,
}


def normalise_status(raw: object) -> RunStatus:
    """Map a wire status to :class:`RunStatus`; anything unrecognised is ``UNKNOWN``."""
    if not isinstance(raw, str):
        return RunStatus.UNKNOWN
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    return _STATUS_NAMES.get(key, RunStatus.UNKNOWN)


def resolve_url(base_url: str, url: str) -> str:
    """An absolute URL: relative ones (``/api/generate-video/content?...``) are resolved
    against the base URL."""
    return urljoin(base_url.rstrip("/") + "/", url.strip())


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: a number (``"2"``, ``"1.5"``) or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(*values: object) -> object:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _str(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):  # an error object: {"message": ..., ...}
        return _str(value.get("message")) or _str(value.get("type"))
    return str(value)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _video_url(data: Mapping[str, Any], flat: Mapping[str, Any]) -> str | None:
    output = _dict(data.get("output"))
    video = output.get("video")
    nested = video.get("url") if isinstance(video, dict) else video
    found = _first(
        nested,
        output.get("url"),
        data.get("videoUrl"),
        data.get("video_url"),
        flat.get("videoUrl"),
        flat.get("video_url"),
    )
    return found if isinstance(found, str) else None


def parse_status(
    body: object,
    *,
    base_url: str,
    run_id: str | None = None,
    model: str | None = None,
    retry_after_s: float | None = None,
) -> VideoStatus:
    """Read a status answer of the legacy route (``{"data": {...}}``), the unified route
    (flat fields beside ``data``) or the flat-only schema. The nested ``data.status`` wins
    over the flat one when both are present."""
    if not isinstance(body, dict):
        raise UnexpectedResponseError(f"expected a JSON object for a status, got {body!r:.80}")
    data = _dict(body.get("data"))
    raw_status = _first(data.get("status"), body.get("status"))
    found_id = _first(
        run_id,
        body.get("requestId"),
        body.get("runId"),
        data.get("requestId"),
        data.get("runId"),
        body.get("id"),
    )
    if found_id is None:
        raise UnexpectedResponseError("the status answer names no run")
    url = _video_url(data, body)
    flat_error = body.get("error")
    error = _str(_first(data.get("error"), None if isinstance(flat_error, int) else flat_error))
    progress = _float(_first(data.get("progress"), body.get("progress")))
    return VideoStatus(
        run_id=str(found_id),
        status=normalise_status(raw_status),
        raw_status=str(raw_status) if raw_status is not None else "",
        model=_str(_first(body.get("model"), data.get("model"), model)),
        video_url=resolve_url(base_url, url) if url else None,
        progress=max(0.0, min(100.0, progress)) if progress is not None else None,
        queue_position=_int(_first(data.get("queuePosition"), body.get("queuePosition"))),
        error=error,
        is_nsfw=_bool(_first(data.get("isNSFWError"), body.get("isNSFWError"))),
        user_friendly_error=_str(
            _first(data.get("userFriendlyError"), body.get("userFriendlyError"))
        ),
        cost=_float(_first(data.get("cost"), body.get("cost"))),
        provider_request_id=_str(data.get("request_id")),
        created_at=_datetime(_first(data.get("createdAt"), body.get("createdAt"))),
        started_at=_datetime(_first(data.get("startedAt"), body.get("startedAt"))),
        completed_at=_datetime(_first(data.get("completedAt"), body.get("completedAt"))),
        expires_at=_datetime(_first(data.get("expiresAt"), body.get("expiresAt"))),
        retry_after_s=retry_after_s,
        raw=body,
    )


def parse_submission(body: object, *, model: str) -> Submission:
    """Read a submit answer; ``runId`` is preferred, ``id`` accepted when alone."""
    if not isinstance(body, dict):
        raise UnexpectedResponseError(f"expected a JSON object from submit, got {body!r:.80}")
    run_id = _first(body.get("runId"), body.get("id"), body.get("requestId"))
    if run_id is None:
        raise UnexpectedResponseError("the submit answer has neither 'runId' nor 'id'")
    return Submission(
        run_id=str(run_id),
        model=_str(body.get("model")) or model,
        raw_status=_str(body.get("status")) or "pending",
        cost=_float(body.get("cost")),
        payment_source=_str(body.get("paymentSource")),
        remaining_balance=_float(body.get("remainingBalance")),
        raw=body,
    )


def parse_models(body: object) -> list[VideoModel]:
    """Read ``{"object": "list", "data": [...]}`` (a bare list is accepted too)."""
    items = body.get("data") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise UnexpectedResponseError("expected a list of models")
    models = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        capabilities = _dict(item.get("capabilities"))
        architecture = _dict(item.get("architecture"))
        supported = _dict(item.get("supported_parameters"))
        parameters = supported.get("parameters", supported)
        models.append(
            VideoModel(
                id=str(item["id"]),
                name=_str(item.get("name")) or str(item["id"]),
                description=_str(item.get("description")) or "",
                text_to_video=_bool(capabilities.get("text_to_video")),
                image_to_video=_bool(capabilities.get("image_to_video")),
                input_modalities=tuple(
                    str(m) for m in architecture.get("input_modalities") or () if m
                ),
                pricing=_dict(item.get("pricing")),
                parameters=_dict(parameters),
                raw=item,
            )
        )
    return models


def _error_text(body: object) -> tuple[str | None, str | None]:
    """(message, type) from any of the error envelopes the API family uses:
    ``{"error": {"message", "type", "code"}}``, ``{"error": 404, "message": ...}``,
    ``{"error": "text", "status": N}``."""
    if not isinstance(body, dict):
        text = body.strip() if isinstance(body, str) else None
        return (text[:300] if text else None), None
    error = body.get("error")
    if isinstance(error, dict):
        kind = _str(error.get("type"))
        code = _str(error.get("code"))
        if code and code.lower() == "content_policy_violation":
            kind = "CONTENT_POLICY_VIOLATION"
        return _str(error.get("message")) or _str(body.get("message")), kind
    if isinstance(error, str):
        return error, _str(body.get("type"))
    return _str(body.get("message")) or _str(body.get("detail")), _str(body.get("type"))


def error_from_response(
    status_code: int,
    body: object,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> APIStatusError:
    """The exception for an error answer; its class follows the status code (and the
    ``CONTENT_POLICY_VIOLATION`` type on a 400)."""
    message, kind = _error_text(body)
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "body": body,
        "request_id": request_id,
        "error_type": kind,
        "retry_after_s": retry_after_s,
    }
    cls: type[APIStatusError]
    if kind and kind.upper() == "CONTENT_POLICY_VIOLATION":
        cls = ContentPolicyError
    elif status_code == 401:
        cls = AuthenticationError
    elif status_code == 403:
        cls = PermissionDeniedError
    elif status_code == 404:
        cls = NotFoundError
    elif status_code == 429:
        cls = RateLimitError
    elif status_code in (400, 409, 413, 422):
        cls = InvalidRequestError
    else:
        cls = APIStatusError
    return cls(message or None, **kwargs)
