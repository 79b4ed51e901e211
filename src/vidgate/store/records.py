"""Values the store returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status


@dataclass(frozen=True)
class RunRecord:
    id: str
    api_key_id: str
    model: str
    backend: str
    status: Status
    request: dict[str, Any]
    cost: float
    created_at: float
    updated_at: float
    available_at: float
    attempts: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    progress: float | None = None
    provider_request_id: str | None = None
    provider_state: dict[str, Any] | None = None
    provider_status: str | None = None
    error: str | None = None
    user_friendly_error: str | None = None
    is_nsfw: bool = False
    output_key: str | None = None
    output_content_type: str | None = None
    output_size: int | None = None
    started_at: float | None = None
    completed_at: float | None = None
    deadline_at: float | None = None
    next_poll_at: float | None = None
    submit_started_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    seq: int = 1
    webhook_url: str | None = None
    webhook_events: str | None = None
    video_s: float | None = None
    thumbnail_key: str | None = None
    output_deleted_at: float | None = None
    """When retention deleted the video (and its thumbnail); None while it is kept."""
    provider: str | None = None
    """The route (``[providers.X]`` section) the run was last submitted to."""
    routes: str | None = None
    """The providers the run may use, in order, comma-separated; None: the model's routes."""
    adjusted: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["status"] = Status(values["status"])
        values["is_nsfw"] = bool(values.get("is_nsfw"))
        values["cost"] = float(values["cost"])  # SQLite's RETURNING gives 0, not 0.0
        return cls(**values)

    @property
    def generation_request(self) -> GenerationRequest:
        return GenerationRequest.from_json(self.request)


class StatusRow(NamedTuple):
    """A run as a status poll reads it: only what its status view shows (never the request,
    which can hold megabytes of image). :class:`RunRecord` has the same fields."""

    id: str
    api_key_id: str
    model: str
    backend: str
    status: Status
    cost: float
    progress: float | None
    provider_request_id: str | None
    provider_state: dict[str, Any] | None
    provider_status: str | None
    error: str | None
    user_friendly_error: str | None
    is_nsfw: bool
    output_key: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    seq: int
    thumbnail_key: str | None
    output_deleted_at: float | None
    provider: str | None
    adjusted: dict[str, Any] | None
    """What a snapping model changed in the request: ``{field: {"requested", "used"}}``."""


RunView = RunRecord | StatusRow
"""What the status views render: a whole run, or the part a poll reads."""


@dataclass(frozen=True, slots=True)
class RemoteRun:
    """A remote run as the poller leases it: only what its next operation needs. The
    ``request`` (which can be megabytes of image) is loaded for a submit only."""

    id: str
    model: str
    status: Status
    attempts: int
    provider_request_id: str | None
    provider_state: dict[str, Any] | None
    provider_status: str | None
    progress: float | None
    deadline_at: float | None
    submit_started_at: float | None
    provider: str | None = None
    routes: str | None = None
    request: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RemoteRun:
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["status"] = Status(values["status"])
        return cls(**values)

    @property
    def generation_request(self) -> GenerationRequest:
        if self.request is None:
            raise ValueError(f"run {self.id}: its request was not loaded (only submits load it)")
        return GenerationRequest.from_json(self.request)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    webhook_secret: str
    created_at: float
    revoked_at: float | None = None
    webhook_url: str | None = None
    webhook_secret_previous: str | None = None
    webhook_secret_rotated_at: float | None = None
    budget_usd_per_day: float | None = None
    max_in_flight: int | None = None
    admin: bool = False
    """Whether the key may sign in to the dashboard (it works as an API key too)."""
    providers: str | None = None
    """The providers this key's runs may use, comma-separated; None: any."""

    @property
    def provider_list(self) -> list[str] | None:
        return None if self.providers is None else self.providers.split(",")

    @property
    def limited(self) -> bool:
        """Whether submits of this key are checked against a budget or in-flight limit."""
        return self.budget_usd_per_day is not None or self.max_in_flight is not None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> KeyRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["admin"] = bool(values["admin"])  # SQLite answers 0 or 1
        return cls(**values)

    def signing_secrets(self, now: float, overlap_s: float) -> list[str]:
        """The secrets webhooks are signed with: the current one, and the previous one for
        ``overlap_s`` after a rotation, so receivers can switch without losing events."""
        secrets = [self.webhook_secret]
        rotated = self.webhook_secret_rotated_at
        if self.webhook_secret_previous and rotated is not None and now - rotated < overlap_s:
            secrets.append(self.webhook_secret_previous)
        return secrets


@dataclass(frozen=True)
class DeliveryRecord:
    """One webhook message (``id`` is its ``webhook-id``) and its delivery so far."""

    id: str
    run_id: str
    api_key_id: str
    type: str
    url: str
    seq: int
    created_at: float
    status: str
    """pending, delivered, failed (given up or refused) or gone (the receiver said 410)."""
    attempts: int
    log: list[dict[str, Any]]
    next_attempt_at: float | None = None
    payload: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> DeliveryRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})


@dataclass(frozen=True)
class NewRun:
    """Everything a submit writes; the store adds timestamps and the status."""

    id: str
    api_key_id: str
    model: str
    backend: str
    request: dict[str, Any]
    cost: float
    available_at: float
    deadline_at: float | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None
    video_s: float | None = None
    """The seconds of video asked for (the model's default when the request names none)."""
    routes: str | None = None
    """The providers the run may use, in order (see :func:`vidgate.runs.routing.encode_routes`)."""
    adjusted: dict[str, Any] | None = None
    """What the model's limits snapped: ``{field: {"requested": ..., "used": ...}}``."""
    created_at: float | None = None
    """When the submit was accepted (its id is made from the same clock reading, so runs
    sort the same by either); the store's clock when None."""


class UsageRow(NamedTuple):
    """One key's runs of one model on one UTC day."""

    day: str
    """``YYYY-MM-DD`` (UTC)."""
    api_key_id: str
    model: str
    runs: int
    seconds: float
    """Seconds of video made (completed runs)."""
    cost_usd: float


class RecentRun(NamedTuple):
    id: str
    model: str
    status: Status
    created_at: float


class Balance(NamedTuple):
    """A key's day so far: its budget (None: none) and what its runs cost or hold."""

    budget_usd: float | None
    spent_usd: float

    @property
    def remaining_usd(self) -> float | None:
        if self.budget_usd is None:
            return None
        return round(max(0.0, self.budget_usd - self.spent_usd), 6)
