"""Pydantic models that describe the wire shapes in ``/openapi.json``.

Responses are built by :mod:`vidgate.views` (fields that do not apply are left out);
these models document them with the upstream schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vidgate.runs.status import Status


def _left_out_not_null(schema: dict[str, Any]) -> None:
    """An optional field is left out when it does not apply, never sent as ``null``
    (OpenAPI 3.1 has no ``nullable``): its schema is the value's alone."""
    required = set(schema.get("required", ()))
    for name, field in schema.get("properties", {}).items():
        if name in required:
            continue
        field.pop("default", None)
        options = field.get("anyOf")
        if options is not None:
            kept = [option for option in options if option != {"type": "null"}]
            field.pop("anyOf")
            field.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


class _Wire(BaseModel):
    """A response body: exactly these fields (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_left_out_not_null)


class Error(_Wire):
    """The upstream ``Error`` schema, used by every route but submit."""

    error: int = Field(description="HTTP status code")
    message: str


class SubmitErrorDetail(_Wire):
    message: str
    type: str = Field(
        description="invalid_request_error, CONTENT_POLICY_VIOLATION, authentication_error, "
        "INSUFFICIENT_BALANCE or RATE_LIMITED"
    )


class SubmitError(_Wire):
    """The upstream submit error envelope."""

    error: SubmitErrorDetail
    status: int


class SubmitResponse(_Wire):
    runId: str
    id: str
    status: Literal["pending"]
    model: str
    cost: float
    paymentSource: str
    remainingBalance: float | None


class VideoRef(_Wire):
    url: str


class Output(_Wire):
    video: VideoRef


class Adjustment(_Wire):
    requested: int | float | str = Field(description="What the submit asked for")
    used: int | str = Field(description="The nearest value the model allows, which was used")


class _StatusData(_Wire):
    output: Output | None = Field(None, description="Only when COMPLETED")
    cost: float
    error: str | None = Field(None, description="Why the run failed or was cancelled")
    isNSFWError: bool | None = Field(None, description="On FAILED: a content-policy failure")
    userFriendlyError: str | None = Field(None, description="On FAILED, when there is one")
    progress: float | None = Field(None, description="extension: 0-100")
    queuePosition: int | None = Field(None, description="extension: while IN_QUEUE")
    createdAt: str | None = Field(None, description="extension: ISO 8601")
    startedAt: str | None = Field(None, description="extension: ISO 8601")
    completedAt: str | None = Field(None, description="extension: ISO 8601")
    provider: str | None = Field(
        None,
        description="extension: the provider (route) the run was submitted to, for a remote "
        "model; a model with several routes names the one that ran it",
    )
    providerStatus: str | None = Field(None, description="extension: raw upstream status")
    expiresAt: str | None = Field(None, description="extension: when output.video.url expires")
    videoDeleted: bool | None = Field(
        None,
        description="extension: true once the server's retention policy has deleted a "
        "COMPLETED run's video (and thumbnail); output is then left out",
    )
    videoDeletedAt: str | None = Field(None, description="extension: ISO 8601, with videoDeleted")
    videoDeletedReason: str | None = Field(
        None, description="extension: with videoDeleted, what happened and what to do"
    )
    adjusted: dict[str, Adjustment] | None = Field(
        None,
        description="extension: parameters moved to the nearest value the model allows "
        "(duration, resolution, aspect_ratio), on models configured to snap",
    )


class LegacyStatusData(_StatusData):
    status: Status = Field(description="Current status")
    request_id: str = Field(description="The provider's request id; the run id for local runs")


class UnifiedStatusData(_StatusData):
    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED"] = Field(
        description="Current status; a cancelled run is CANCELED (one L) on this route"
    )
    requestId: str = Field(description="The run id")


class GenerateVideoStatusResponse(_Wire):
    data: LegacyStatusData


class UnifiedVideoStatusResponse(_Wire):
    requestId: str
    model: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    progress: float | None
    estimatedTimeRemaining: float | None
    videoUrl: str | None
    error: str | None
    createdAt: str | None
    completedAt: str | None
    isNSFWError: bool | None = Field(None, description="On failed: a content-policy failure")
    userFriendlyError: str | None = Field(None, description="On failed, when there is one")
    thumbnailUrl: str | None = Field(
        None,
        description="extension: on completed, the signed URL of the video's poster frame "
        "(a JPEG; it expires with videoUrl); left out when the run has none",
    )
    videoDeleted: bool | None = Field(
        None, description="extension: as data.videoDeleted (videoUrl is then null)"
    )
    videoDeletedAt: str | None = Field(None, description="extension: as data.videoDeletedAt")
    videoDeletedReason: str | None = Field(
        None, description="extension: as data.videoDeletedReason"
    )
    data: UnifiedStatusData


RUN_REFERENCE: dict[str, Any] = {
    "title": "RunReference",
    "description": "The run, as runId or its alias requestId (runId wins when both are sent)",
    "type": "object",
    "properties": {
        "runId": {"type": "string", "minLength": 1, "description": "The run id"},
        "requestId": {"type": "string", "minLength": 1, "description": "Alias of runId"},
    },
    "anyOf": [{"required": ["runId"]}, {"required": ["requestId"]}],
}


class WebhookAttempt(_Wire):
    at: str = Field(description="ISO 8601: when the attempt was made")
    statusCode: int | None = Field(description="The receiver's HTTP status; null if none came")
    error: str | None = Field(description="Why the attempt did not count as delivered")
    durationMs: float | None = Field(description="How long the attempt took")


class WebhookDelivery(_Wire):
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


class WebhookDeliveries(_Wire):
    runId: str
    webhookUrl: str | None = Field(description="Where the run's webhooks go; null: nowhere")
    deliveries: list[WebhookDelivery] = Field(description="Oldest first")


class CatalogPricing(_Wire):
    currency: Literal["USD"]
    per_video: dict[str, float] | None = Field(
        None, description="USD per video by resolution (the per-video part of the price)"
    )
    per_second: dict[str, float] | None = Field(
        None, description="USD per second of video by resolution"
    )
    per_duration: dict[str, float] | None = Field(
        None,
        description="USD per video by duration tier (seconds, as strings): a run pays the "
        "smallest tier that holds its duration",
    )


class Architecture(_Wire):
    modality: Literal["video"]
    input_modalities: list[Literal["text", "image"]]
    output_modalities: list[Literal["video"]]


class Capabilities(_Wire):
    video_generation: bool
    text_to_video: bool
    image_to_video: bool
    audio_generation: bool


class SupportedParameters(_Wire):
    resolutions: list[str] = Field(description="The resolutions the model takes")
    durations: list[int] = Field(description="The durations the model takes, in seconds")
    aspect_ratios: list[str] = Field(description="The aspect ratios the model takes")
    parameters: dict[str, dict[str, Any]] = Field(
        description="Upstream's nested specs: type, default, options or min and max"
    )
    defaults: dict[str, Any]


class CatalogModel(_Wire):
    id: str
    object: Literal["model"]
    name: str
    description: str
    architecture: Architecture
    pricing: CatalogPricing
    capabilities: Capabilities
    supported_parameters: SupportedParameters


class ModelList(_Wire):
    object: Literal["list"]
    data: list[CatalogModel]
    meta: dict[str, Any]


RUN_LINKS: dict[str, Any] = {
    "GetVideoStatusLegacy": {
        "operationId": "getVideoStatusLegacy",
        "parameters": {"runId": "$response.body#/runId", "modelSlug": "$response.body#/model"},
    },
    "GetVideoStatus": {
        "operationId": "getVideoStatus",
        "parameters": {"requestId": "$response.body#/runId"},
    },
    "CancelVideo": {
        "operationId": "cancelVideo",
        "requestBody": {"runId": "$response.body#/runId"},
    },
    "GetWebhookDeliveries": {
        "operationId": "getWebhookDeliveries",
        "parameters": {"runId": "$response.body#/runId"},
    },
}
"""What a submit's answer leads to (OpenAPI links): its status, its cancel, its webhooks."""


def error_responses(*codes: int, submit: bool = False) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Bad Request - missing or invalid parameters",
        401: "Missing or invalid API key",
        403: "Bad or expired file signature",
        404: "Run not found (or it belongs to another key)",
        402: "INSUFFICIENT_BALANCE: the run would exceed the key's daily budget",
        409: "Idempotency-Key reused with a different body",
        410: "The run's video was deleted by the server's retention policy",
        429: "Too many submits, or too many runs in flight; see Retry-After",
        503: (
            "The database is unavailable for now (see Retry-After); on /healthz also: "
            "this process's worker has stopped"
        ),
    }
    model = SubmitError if submit else Error
    return {code: {"model": model, "description": texts.get(code, "Error")} for code in codes}


class BalanceBody(_Wire):
    usd_balance: str = Field(
        description="What is left of the key's budget for today (UTC), in USD, as a string; "
        "'Infinity' for a key without a budget"
    )
    nano_balance: str = Field(description="Always '0': this gateway takes no Nano")
    budget_usd_per_day: str | None = Field(None, description="extension: the daily budget")
    spent_usd_today: str = Field(description="extension: cost of today's runs (UTC)")


class UsageEntry(_Wire):
    date: str = Field(description="UTC day, YYYY-MM-DD")
    model: str
    runs: int = Field(description="Runs submitted that day")
    seconds: float = Field(description="Seconds of video made (completed runs)")
    cost: float = Field(description="USD: final costs, and estimates of unfinished runs")


class UsageTotals(_Wire):
    runs: int
    seconds: float
    cost: float


class UsageBody(_Wire):
    object: Literal["usage"]
    from_: str = Field(alias="from")
    to: str
    data: list[UsageEntry]
    totals: UsageTotals


class RecoveredRun(_Wire):
    runId: str
    id: str
    model: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    createdAt: str


class RecoverBody(_Wire):
    data: list[RecoveredRun]
