"""vidgate: a self-hosted gateway for AI video generation with NanoGPT's video API shape.

The package root carries the Python SDK (``from vidgate import Client, AsyncClient``);
the client and httpx are imported when one of these names is first used, so that the
processes that need none of them (the testcard renderer, started once per run) start fast.
"""

import typing

if typing.TYPE_CHECKING:
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


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> object:
    """The SDK's names, imported on first use (PEP 562)."""
    if name == "__version__":
        from vidgate.client._base import SDK_VERSION

        return SDK_VERSION
    if name in __all__:
        import vidgate.client

        return getattr(vidgate.client, name)
    raise AttributeError(f"module 'vidgate' has no attribute {name!r}")
