"""Everything a worker process runs: the local renderer loop and the remote poller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from vidgate.backends.registry import local_backends, remote_backends
from vidgate.config import Settings
from vidgate.runs.catalog import Catalog
from vidgate.storage.local import LocalStorage
from vidgate.store.sql import SQLStore
from vidgate.worker.local import LocalWorker, new_owner_id
from vidgate.worker.remote import RemotePoller


@dataclass
class WorkerRuntime:
    settings: Settings
    store: SQLStore
    storage: LocalStorage
    catalog: Catalog
    owner: str = field(default_factory=new_owner_id)
    local: LocalWorker | None = None

    def wake(self) -> None:
        if self.local is not None:
            self.local.wake()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly (leases of unfinished local runs are
        handed back at once)."""
        self.local = LocalWorker(
            self.store,
            self.storage,
            self.catalog,
            local_backends(),
            self.settings.worker,
            self.settings.data_dir / "work",
            owner=self.owner,
        )
        limits = httpx.Limits(
            max_connections=self.settings.worker.remote_concurrency,
            max_keepalive_connections=self.settings.worker.remote_concurrency,
        )
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
            poller = RemotePoller(
                self.store,
                self.storage,
                self.catalog,
                remote_backends(self.settings, http),
                {name: p.poll_interval_s for name, p in self.settings.providers.items()},
                self.settings.worker,
                self.owner,
                copy_attempts=self.settings.storage.copy_attempts,
            )
            await asyncio.gather(self.local.run(stop), poller.run(stop))
