"""Values the store returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

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

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["status"] = Status(values["status"])
        values["is_nsfw"] = bool(values.get("is_nsfw"))
        return cls(**values)

    @property
    def generation_request(self) -> GenerationRequest:
        return GenerationRequest.from_json(self.request)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    webhook_secret: str
    created_at: float
    revoked_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> KeyRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


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
