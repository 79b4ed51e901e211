"""Runs rendered as the upstream wire shapes, for the status routes, the event stream and
webhooks alike. Fields that don't apply are left out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from vidgate.runs.status import Status
from vidgate.storage.base import Storage
from vidgate.store.records import RunRecord, RunView
from vidgate.store.sql import SQLStore


def iso(ts: float | None) -> str | None:
    """``ts`` as ISO 8601 in UTC with milliseconds, ``2026-11-30T14:05:09.123Z``: what
    ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`` writes (with
    ``Z``), rounded as it rounds, from tables (every status answer formats a few; a
    test holds the two equal)."""
    if ts is None:
        return None
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)  # as datetime rounds a timestamp: half to even
    seconds = int(whole)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    day, second = divmod(seconds, 86400)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= 4096:
            _DATES.clear()
        date = _DATES[day] = datetime.fromtimestamp(day * 86400, UTC).date().isoformat() + "T"
    minute, second = divmod(second, 60)
    return date + _MINUTES[minute] + _SECONDS[second] + _MILLIS[micros // 1000]


_DATES: dict[int, str] = {}
_MINUTES = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECONDS = [f"{s:02d}" for s in range(60)]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


UNIFIED_CANCELLED = "CANCELED"
"""A cancelled run's nested ``data.status`` on the unified route (and so in its events and
webhooks), spelt as upstream documents that route; the legacy route keeps ``CANCELLED``."""


class OutputLink(NamedTuple):
    url: str
    expires_at: float


@dataclass(frozen=True)
class OutputLinks:
    """The signed URLs of a completed run's files: its video and, if it has one, poster."""

    video: OutputLink
    thumbnail: OutputLink | None = None


VIDEO_DELETED = (
    "this run's video (and its thumbnail) was deleted by the server's retention policy; "
    "it can no longer be downloaded. Submit the request again for a new video"
)


def _data(run: RunView, link: OutputLink | None, queue_position: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": run.status.value}
    if link is not None and run.status is Status.COMPLETED:
        data["output"] = {"video": {"url": link.url}}
        data["expiresAt"] = iso(link.expires_at)
    elif run.output_deleted_at is not None:
        data["videoDeleted"] = True
        data["videoDeletedAt"] = iso(run.output_deleted_at)
        data["videoDeletedReason"] = VIDEO_DELETED
    data["cost"] = run.cost
    if run.status is Status.FAILED:
        data["error"] = run.error or "Video generation failed"
        data["isNSFWError"] = run.is_nsfw
        if run.user_friendly_error:
            data["userFriendlyError"] = run.user_friendly_error
    elif run.status is Status.CANCELLED and run.error:
        data["error"] = run.error
    if run.status is Status.COMPLETED:
        data["progress"] = 100
    elif run.progress is not None:
        data["progress"] = run.progress
    elif run.status is Status.IN_QUEUE:
        data["progress"] = 0
    if queue_position is not None and run.status is Status.IN_QUEUE:
        data["queuePosition"] = queue_position
    if run.adjusted:
        data["adjusted"] = run.adjusted
    for key, value in (
        ("createdAt", iso(run.created_at)),
        ("startedAt", iso(run.started_at)),
        ("completedAt", iso(run.completed_at)),
        ("provider", run.provider),
        ("providerStatus", run.provider_status),
    ):
        if value is not None:
            data[key] = value
    return data


def legacy_status(
    run: RunView, links: OutputLinks | None, queue_position: int | None = None
) -> dict[str, Any]:
    """``GET /api/generate-video/status``: ``{"data": {..., "request_id": ...}}``."""
    data = _data(run, links.video if links else None, queue_position)
    data = {"status": data.pop("status"), "request_id": run.provider_request_id or run.id, **data}
    return {"data": data}


def unified_status(
    run: RunView, links: OutputLinks | None, queue_position: int | None = None
) -> dict[str, Any]:
    """``GET /api/video/status``: flat fields (lower-case status) plus the nested ``data``;
    extensions: ``thumbnailUrl`` (the poster), ``videoDeleted`` (and when, and why)."""
    link = links.video if links is not None else None
    data = _data(run, link, queue_position)
    data.pop("status")
    data = {
        "status": UNIFIED_CANCELLED if run.status is Status.CANCELLED else run.status.value,
        "requestId": run.id,
        **data,
    }
    body: dict[str, Any] = {
        "requestId": run.id,
        "model": run.model,
        "status": run.status.flat,
        "progress": data.get("progress"),
        "estimatedTimeRemaining": None,
        "videoUrl": link.url if link is not None and run.status is Status.COMPLETED else None,
        "error": data.get("error"),
        "createdAt": data.get("createdAt"),
        "completedAt": data.get("completedAt"),
    }
    if links is not None and links.thumbnail is not None and run.status is Status.COMPLETED:
        body["thumbnailUrl"] = links.thumbnail.url
    if "videoDeleted" in data:
        for key in ("videoDeleted", "videoDeletedAt", "videoDeletedReason"):
            body[key] = data[key]
    if run.status is Status.FAILED:
        body["isNSFWError"] = run.is_nsfw
        if run.user_friendly_error:
            body["userFriendlyError"] = run.user_friendly_error
    body["data"] = data
    return body


def encode(body: Any) -> bytes:
    """JSON as every status answer, event and webhook carries it: compact, UTF-8."""
    return orjson.dumps(body)


def submit_response(run: RunRecord, remaining_usd: float | None = None) -> dict[str, Any]:
    """The 202 of a submit; ``remaining_usd``: what is left of the key's budget for today
    (None: the key has no budget)."""
    return {
        "runId": run.id,
        "id": run.id,
        "status": "pending",
        "model": run.model,
        "cost": run.cost,
        "paymentSource": "USD",
        "remainingBalance": remaining_usd,
    }


def output_links(storage: Storage, run: RunView, base: str, ttl_s: int) -> OutputLinks | None:
    """The signed URLs of a completed run's video and poster (stable for half their
    lifetime); None before completion, or once retention has deleted them."""
    if run.status is not Status.COMPLETED or run.output_key is None:
        return None
    if run.output_deleted_at is not None:
        return None

    def link(key: str) -> OutputLink:
        url, expires = storage.signed_url(key, base, ttl_s, issued_from=run.completed_at)
        return OutputLink(url, expires)

    thumbnail = link(run.thumbnail_key) if run.thumbnail_key is not None else None
    return OutputLinks(link(run.output_key), thumbnail)


async def status_body(
    store: SQLStore,
    storage: Storage,
    run: RunView,
    *,
    base: str,
    url_ttl_s: int,
    shape: Literal["legacy", "unified"] = "unified",
) -> dict[str, Any]:
    """The run as a status route shows it, with its queue position and video link."""
    position = None
    if run.status is Status.IN_QUEUE:
        provider_position = (run.provider_state or {}).get("queue_position")
        if run.provider_request_id is not None:
            position = provider_position if isinstance(provider_position, int) else None
        else:
            position = await store.queue_position(run)
    render = legacy_status if shape == "legacy" else unified_status
    return render(run, output_links(storage, run, base, url_ttl_s), position)
