"""Everything a worker process runs: the local renderer loop, the remote poller, the
webhook sender (woken by run events instead of waiting for their next look) and, when
``[retention]`` is set, the retention sweep."""

from __future__ import annotations

import asyncio

from vidgate.backends.registry import local_backends, remote_backends
from vidgate.events.hub import RunChange
from vidgate.runs.status import Status
from vidgate.services import Services
from vidgate.worker.local import LocalWorker, new_owner_id
from vidgate.worker.metered import metered
from vidgate.worker.provider_http import provider_client
from vidgate.worker.remote import RemotePoller
from vidgate.worker.retention import RetentionSweeper
from vidgate.worker.webhooks import WebhookSender


async def run_worker(services: Services, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then stop cleanly (leases of unfinished local runs are
    handed back at once). If a part fails, the others are stopped and the failure (an
    ``ExceptionGroup``) is raised: the process must not go on as if it had a worker."""
    settings, store = services.settings, services.store
    owner = new_owner_id()
    models = settings.worker.models  # None: every model
    local = LocalWorker(
        store,
        services.storage,
        services.catalog,
        local_backends(services.catalog, models),
        settings.worker,
        settings.data_dir / "work",
        owner=owner,
    )
    roots = None
    if not settings.worker.allow_private_output_hosts:
        roots = [provider.base_url for provider in settings.providers.values()]
    async with provider_client(settings.worker.remote_concurrency, roots) as http:
        poller = RemotePoller(
            store,
            services.storage,
            services.catalog,
            metered(remote_backends(settings, http, models=models), services.metrics),
            {name: p.poll_interval_s for name, p in settings.providers.items()},
            settings.worker,
            owner,
            copy_attempts=settings.storage.copy_attempts,
            retry_ambiguous={
                name for name, p in settings.providers.items() if p.retry_ambiguous_submits
            },
            breakers=services.breakers,
            metrics=services.metrics,
        )
        sender = WebhookSender(
            store,
            services.storage,
            settings.webhooks,
            settings.server,
            settings.storage.url_ttl_s,
            owner,
            metrics=services.metrics,
        )

        def on_change(change: RunChange | None) -> None:
            if change is None:  # changes may have been missed: everyone looks again
                local.wake()
                poller.wake()
                sender.wake()
                return
            if change.status is Status.CANCELLED:
                local.stop_run(change.run_id)
            if change.backend in local.backends:
                if change.status is Status.IN_QUEUE:
                    local.wake()
            elif change.status in (Status.IN_QUEUE, Status.CANCELLED):
                poller.wake()
            if change.webhook:
                sender.wake(change)

        store.events.add_listener(on_change)
        try:  # one part failing stops the others: the worker is whole or not running
            async with asyncio.TaskGroup() as parts:
                parts.create_task(local.run(stop))
                parts.create_task(poller.run(stop))
                parts.create_task(sender.run(stop))
                if settings.retention.enabled:
                    sweeper = RetentionSweeper(
                        store, services.storage, settings.retention, metrics=services.metrics
                    )
                    parts.create_task(sweeper.run(stop))
        finally:
            store.events.remove_listener(on_change)
