"""A remote backend whose operations are counted and timed, by provider and operation
(``vidgate_provider_*`` in :mod:`vidgate.metrics`): the adapters stay free of metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from vidgate.backends.base import ProviderJob, ProviderUpdate, RemoteBackend
from vidgate.metrics import Metrics
from vidgate.runs.request import GenerationRequest


class MeteredBackend:
    """``inner``, with each call counted under ``provider`` (a ``[providers.X]`` name)."""

    def __init__(self, inner: RemoteBackend, provider: str, metrics: Metrics) -> None:
        self.inner = inner
        self.provider = provider
        self.metrics = metrics
        self.name = inner.name
        self.min_poll_interval_s = inner.min_poll_interval_s
        self.idempotent_submits = inner.idempotent_submits

    async def submit(
        self,
        request: GenerationRequest,
        provider_model: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> ProviderJob:
        with self.metrics.provider_call(self.provider, "submit"):
            return await self.inner.submit(
                request, provider_model, options, idempotency_key=idempotency_key
            )

    async def poll(self, job: ProviderJob) -> ProviderUpdate:
        with self.metrics.provider_call(self.provider, "poll"):
            return await self.inner.poll(job)

    async def cancel(self, job: ProviderJob) -> None:
        with self.metrics.provider_call(self.provider, "cancel"):
            await self.inner.cancel(job)

    async def open_output(self, job: ProviderJob, url: str) -> AsyncIterator[bytes]:
        stream = self.inner.open_output(job, url)
        try:
            with self.metrics.provider_call(self.provider, "download"):
                async for chunk in stream:
                    yield chunk
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()


def metered(backends: Mapping[str, RemoteBackend], metrics: Metrics) -> dict[str, RemoteBackend]:
    """Each backend (by provider name) wrapped in a :class:`MeteredBackend`."""
    return {name: MeteredBackend(backend, name, metrics) for name, backend in backends.items()}
