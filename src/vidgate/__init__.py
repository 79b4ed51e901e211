"""vidgate: a self-hosted gateway for AI video generation with NanoGPT's video API shape.

The package root carries the Python SDK (``from vidgate import Client, AsyncClient``);
importing it loads the client and httpx, nothing of the server.
"""

from vidgate.client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AsyncRun,
    AuthenticationError,
    Client,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Run,
    RunStatus,
    Submission,
    UnexpectedResponseError,
    VideoModel,
    VideoNotReady,
    VideoStatus,
    VidgateError,
    WaitTimeout,
    WebhookEvent,
    WebhookVerificationError,
)
from vidgate.client._base import SDK_VERSION as __version__

__all__ = [
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
    "__version__",
]
