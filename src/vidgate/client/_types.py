"""The SDK's typed results: run statuses, a status snapshot, a submit receipt, a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """A run's status. The values are the upper-case wire strings of the upstream API.

    Servers send more spellings than these (``queued``, ``processing``, ``CANCELED``...);
    the parser maps the known ones here and everything else to :attr:`UNKNOWN`, which is
    *not* terminal: a wait keeps polling an unknown status, but never past its deadline.
    """

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED: nothing will change the run again."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


@dataclass(frozen=True)
class VideoStatus:
    """One observation of a run, from either status route (or from cancel).

    ``raw_status`` keeps the value the server sent; ``status`` is its normalised form.
    ``video_url`` is absolute: a relative URL from the server is resolved against the
    client's base URL. ``retry_after_s`` is the server's suggested poll interval, if any.
    """

    run_id: str
    status: RunStatus
    raw_status: str = ""
    model: str | None = None
    video_url: str | None = None
    progress: float | None = None
    queue_position: int | None = None
    error: str | None = None
    is_nsfw: bool = False
    user_friendly_error: str | None = None
    cost: float | None = None
    provider_request_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    retry_after_s: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_completed(self) -> bool:
        return self.status is RunStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.status is RunStatus.FAILED

    @property
    def is_cancelled(self) -> bool:
        return self.status is RunStatus.CANCELLED

    @property
    def message(self) -> str | None:
        """What to show a person about a failure: the friendly text, else the raw error."""
        return self.user_friendly_error or self.error

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``vidgate ... --json`` prints); absent fields are left out."""
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status.value}
        if self.raw_status and self.raw_status != self.status.value:
            out["raw_status"] = self.raw_status
        optional: dict[str, Any] = {
            "model": self.model,
            "video_url": self.video_url,
            "progress": self.progress,
            "queue_position": self.queue_position,
            "error": self.error,
            "user_friendly_error": self.user_friendly_error,
            "cost": self.cost,
            "provider_request_id": self.provider_request_id,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "expires_at": _iso(self.expires_at),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.is_nsfw:
            out["is_nsfw"] = True
        return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Submission:
    """What a submit answered: the run id (``runId``, or ``id`` when that is all there is)
    and the billing fields the server sent."""

    run_id: str
    model: str | None = None
    raw_status: str = "pending"
    cost: float | None = None
    payment_source: str | None = None
    remaining_balance: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.raw_status}
        optional = {
            "model": self.model,
            "cost": self.cost,
            "payment_source": self.payment_source,
            "remaining_balance": self.remaining_balance,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


@dataclass(frozen=True)
class VideoModel:
    """One entry of ``GET /api/v1/video-models``."""

    id: str
    name: str = ""
    description: str = ""
    text_to_video: bool = False
    image_to_video: bool = False
    input_modalities: tuple[str, ...] = ()
    pricing: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "text_to_video": self.text_to_video,
            "image_to_video": self.image_to_video,
            "input_modalities": list(self.input_modalities),
            "pricing": self.pricing,
            "parameters": self.parameters,
        }
