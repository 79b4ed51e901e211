"""Pydantic models that describe the wire shapes in ``/openapi.json``.

Responses are built by :mod:`vidgate.views` (fields that do not apply are left out);
these models document them with the upstream schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vidgate.runs.status import Status


class Error(BaseModel):
    """The upstream ``Error`` schema, used by every route but submit."""

    error: int = Field(description="HTTP status code")
    message: str


class SubmitErrorDetail(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error, CONTENT_POLICY_VIOLATION, authentication_error, "
        "INSUFFICIENT_BALANCE or RATE_LIMITED"
    )


class SubmitError(BaseModel):
    """The upstream submit error envelope."""

    error: SubmitErrorDetail
    status: int


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="A model slug from GET /api/v1/video-models")
    prompt: str | None = None
    negative_prompt: str | None = None
    duration: str | int | None = Field(None, description='"5", "5s" and 5 all mean 5 seconds')
    seconds: str | None = Field(None, description="Sora-style alias of duration")
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "auto"] | None = None
    resolution: str | None = Field(None, description="480p, 720p, 1080p, ...")
    seed: int | str | None = None
    imageDataUrl: str | None = Field(
        None, description="data:image/...;base64,... (aliases image_data_url, image)"
    )
    imageUrl: str | None = None
    webhookUrl: str | None = None


class SubmitResponse(BaseModel):
    runId: str
    id: str
    status: Literal["pending"]
    model: str
    cost: float
    paymentSource: str
    remainingBalance: float | None


class VideoRef(BaseModel):
    url: str


class Output(BaseModel):
    video: VideoRef


class StatusData(BaseModel):
    status: Status = Field(description="Current status")
    request_id: str | None = Field(None, description="Provider request identifier")
    requestId: str | None = Field(None, description="Run id (unified route)")
    output: Output | None = None
    cost: float | None = None
    error: str | None = None
    isNSFWError: bool | None = None
    userFriendlyError: str | None = None
    progress: float | None = Field(None, description="extension: 0-100")
    queuePosition: int | None = Field(None, description="extension")
    createdAt: str | None = Field(None, description="extension: ISO 8601")
    startedAt: str | None = Field(None, description="extension: ISO 8601")
    completedAt: str | None = Field(None, description="extension: ISO 8601")
    providerStatus: str | None = Field(None, description="extension: raw upstream status")
    expiresAt: str | None = Field(None, description="extension: when output.video.url expires")


class GenerateVideoStatusResponse(BaseModel):
    data: StatusData


class UnifiedVideoStatusResponse(BaseModel):
    requestId: str
    model: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    progress: float | None
    estimatedTimeRemaining: float | None
    videoUrl: str | None
    error: str | None
    createdAt: str | None
    completedAt: str | None
    data: StatusData


class CancelRequest(BaseModel):
    runId: str


class WebhookAttempt(BaseModel):
    at: str = Field(description="ISO 8601: when the attempt was made")
    statusCode: int | None = Field(description="The receiver's HTTP status; null if none came")
    error: str | None = Field(description="Why the attempt did not count as delivered")
    durationMs: float | None = Field(description="How long the attempt took")


class WebhookDelivery(BaseModel):
    id: str = Field(description="The message's webhook-id, the same on every attempt")
    type: str = Field(description="video.completed, video.failed, video.cancelled, ...")
    status: Literal["pending", "delivered", "failed", "gone"] = Field(
        description="pending (being retried), delivered (2xx), failed (given up or refused) "
        "or gone (the receiver answered 410)"
    )
    attempts: int
    createdAt: str = Field(description="ISO 8601: when the event happened")
    nextAttemptAt: str | None = Field(description="ISO 8601: the next attempt, while pending")
    deliveredAt: str | None
    lastStatusCode: int | None
    lastError: str | None
    log: list[WebhookAttempt] = Field(description="The attempts, oldest first (the last 50)")


class WebhookDeliveries(BaseModel):
    runId: str
    webhookUrl: str | None = Field(description="Where the run's webhooks go; null: nowhere")
    deliveries: list[WebhookDelivery] = Field(description="Oldest first")


class RedeliverRequest(BaseModel):
    runId: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[dict[str, Any]]
    meta: dict[str, Any]


def error_responses(*codes: int, submit: bool = False) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Bad Request - missing or invalid parameters",
        401: "Missing or invalid API key",
        403: "Bad or expired file signature",
        404: "Run not found (or it belongs to another key)",
        409: "Idempotency-Key reused with a different body",
        429: "Too many submits; see Retry-After",
        503: "This process's worker has stopped",
    }
    model = SubmitError if submit else Error
    return {code: {"model": model, "description": texts.get(code, "Error")} for code in codes}
