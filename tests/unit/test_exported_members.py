"""The public SDK surface is what ``vidgate.__all__`` says, and it is pinned here: adding or
removing a name is a decision, made by editing this list."""

from __future__ import annotations

import vidgate
import vidgate.client

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert vidgate.__all__ == PUBLIC


def test_every_exported_name_exists_and_public_names_are_exported() -> None:
    for name in vidgate.__all__:
        assert hasattr(vidgate, name), name
    public_attrs = {
        name
        for name in dir(vidgate)
        if not name.startswith("_") and not isinstance(getattr(vidgate, name), type(vidgate))
    }
    assert public_attrs == set(vidgate.__all__) - {"__version__"}


def test_the_client_package_exports_the_same_sdk() -> None:
    for name in PUBLIC:
        if name != "__version__":
            assert getattr(vidgate.client, name) is getattr(vidgate, name)
    assert set(vidgate.client.__all__) >= set(PUBLIC) - {"__version__"}


def test_exported_classes_name_the_public_module() -> None:
    for name in vidgate.__all__:
        member = getattr(vidgate, name)
        if isinstance(member, type):
            assert member.__module__.startswith("vidgate.client"), name


def test_every_error_shares_one_root() -> None:
    for name in vidgate.__all__:
        member = getattr(vidgate, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, vidgate.VidgateError), name


def test_the_webhooks_module_is_public() -> None:
    import vidgate.webhooks

    assert vidgate.webhooks.WebhookEvent is vidgate.WebhookEvent
    assert vidgate.webhooks.WebhookVerificationError is vidgate.WebhookVerificationError
    assert callable(vidgate.webhooks.verify) and callable(vidgate.webhooks.sign)
    for name in vidgate.webhooks.__all__:
        assert hasattr(vidgate.webhooks, name), name
