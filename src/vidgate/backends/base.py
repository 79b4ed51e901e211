"""The ports every backend implements.

Two kinds of backend exist:

* a :class:`LocalBackend` renders on this machine: the worker calls :meth:`generate` in a
  task, and cancels that task to stop it;
* a :class:`RemoteBackend` drives a provider's job API: ``submit`` once, then ``poll`` on a
  schedule until the provider reports a terminal state; outputs are then copied into our
  storage by the worker (``open_output`` streams them).

A backend never touches our HTTP API or the database: it gets a request and returns values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

# What people are shown when a run fails; the technical detail stays in the run's ``error``.
NSFW_FRIENDLY = "Content flagged as inappropriate. Please modify your prompt and try again."
FAILED_FRIENDLY = "The video could not be generated. Please try again."
EXPIRED_FRIENDLY = "The generated video expired at the provider before it could be saved."


class BackendError(Exception):
    """The backend failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class GenerationFailed(BackendError):
    """Generation failed.

    ``message`` is the technical detail kept in the run's ``error``; ``user_friendly`` is
    shown to people; ``is_nsfw`` marks content-policy refusals.
    """

    def __init__(
        self,
        message: str,
        *,
        user_friendly: str | None = None,
        is_nsfw: bool = False,
        provider_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.user_friendly = user_friendly
        self.is_nsfw = is_nsfw
        self.provider_status = provider_status


class SubmitRefused(GenerationFailed):
    """The provider refused a submit in a way that says it created nothing and that another
    provider may well take it (it refused our API key): the run's next route may be tried;
    a model with one route fails the run."""


class GenerationCancelled(BackendError):
    """The backend ended the run as cancelled."""


class ProviderUnavailable(BackendError):
    """A passing provider fault (429, 5xx, timeout, malformed answer): try again later."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SubmitOutcomeUnknown(ProviderUnavailable):
    """The submit request may have reached the provider, but no clear answer came back (a
    timeout after sending, a dropped connection, an unreadable success body, a gateway's
    502/504): a job may exist. Sending it again is safe only with an idempotency key the
    provider honours."""


ProgressCallback = Callable[[float], Awaitable[None]]
"""Called with a progress percentage (0-100) as work advances."""


@dataclass(frozen=True)
class LocalOutput:
    path: Path
    content_type: str = "video/mp4"
    duration_s: float | None = None
    """Seconds of video made, if the backend knows (it sets the final cost of a run priced
    per second)."""


class LocalBackend(Protocol):
    """Renders on this machine. Cancel the awaiting task to stop it within a second (a
    diffusers pipeline: within one step)."""

    name: str
    max_active: int | None
    """The most runs of this backend one worker renders at once (one GPU: 1); None: as many
    as the worker's ``concurrency``."""

    async def generate(
        self,
        request: GenerationRequest,
        options: Mapping[str, Any],
        workdir: Path,
        on_progress: ProgressCallback,
    ) -> LocalOutput:
        """Render into ``workdir`` and return the file. Raises :class:`GenerationFailed`."""
        ...


@dataclass(frozen=True)
class ProviderJob:
    """What must be remembered (durably) to find a provider job again after a restart."""

    request_id: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderUpdate:
    """One poll's answer, mapped to our statuses."""

    status: Status
    provider_status: str
    progress: float | None = None
    queue_position: int | None = None
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    is_nsfw: bool = False
    user_friendly_error: str | None = None
    retry_after_s: float | None = None
    provider_cost_usd: float | None = None
    """What the provider says the job cost, where it says (kept beside the configured
    price, which is what the run costs here)."""


class RemoteBackend(Protocol):
    """A provider's job API. All I/O goes through the ``httpx.AsyncClient`` it was given."""

    name: str
    min_poll_interval_s: float
    idempotent_submits: bool
    """Whether the provider honours ``submit``'s ``idempotency_key``: a submit sent again
    with the same key creates no second job, so a submit whose outcome is unknown may be
    sent again."""

    async def submit(
        self,
        request: GenerationRequest,
        provider_model: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> ProviderJob:
        """Create the provider's job. ``idempotency_key`` is the same for every submit of
        one run; an adapter sends it where its provider documents such a key."""
        ...

    async def poll(self, job: ProviderJob) -> ProviderUpdate: ...

    async def cancel(self, job: ProviderJob) -> None: ...

    def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        """Stream one output's bytes (adds the provider's auth where its URLs need it)."""
        ...


@dataclass(frozen=True)
class ProviderSettings:
    """A ``[providers.NAME]`` config section, resolved (the key is read from the env at the edge).

    ``timeout_s`` bounds every single HTTP call; ``options`` holds provider-specific keys from
    the config section. (The poll cadence is the worker's business: see ``RemotePoller``.)
    """

    name: str
    base_url: str
    api_key: str | None = None
    timeout_s: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)
