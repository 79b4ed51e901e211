"""vidgate's Python SDK: submit, wait and download without hand-written polling loops.

Works against a vidgate server and against NanoGPT's hosted video API alike.
"""

from vidgate.client._async import AsyncClient, AsyncRun
from vidgate.client._base import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL
from vidgate.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnexpectedResponseError,
    VideoNotReady,
    VidgateError,
    WaitTimeout,
    WebhookVerificationError,
)
from vidgate.client._sync import Client, Run
from vidgate.client._types import RunStatus, Submission, VideoModel, VideoStatus
from vidgate.client._webhooks import WebhookEvent

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncRun",
    "AuthenticationError",
    "Client",
    "ContentPolicyError",
    "GenerationCancelled",
    "GenerationFailed",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "RunStatus",
    "Submission",
    "UnexpectedResponseError",
    "VideoModel",
    "VideoNotReady",
    "VideoStatus",
    "VidgateError",
    "WaitTimeout",
    "WebhookEvent",
    "WebhookVerificationError",
]
