"""The retention sweep: every ``sweep_interval_s``, delete the videos (and thumbnails) of
runs that completed more than ``videos_days`` ago, then the runs that completed more than
``runs_days`` ago. Every worker process sweeps; the store's verbs make concurrent sweeps
safe (see :mod:`vidgate.store.retention`). Each deletion is logged with its run id.

The clock is a parameter, so that tests decide what "now" is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from vidgate.config_retention import RetentionSettings
from vidgate.logs import event
from vidgate.metrics import Metrics
from vidgate.storage.base import Storage, StorageError
from vidgate.store.errors import StoreUnavailable
from vidgate.store.sql import SQLStore
from vidgate.worker.wakeup import sleep_until

log = logging.getLogger("vidgate.worker")
Clock = Callable[[], float]


@dataclass(frozen=True)
class Swept:
    """What one sweep deleted."""

    videos: int
    runs: int


class RetentionSweeper:
    def __init__(
        self,
        store: SQLStore,
        storage: Storage,
        settings: RetentionSettings,
        *,
        clock: Clock = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep now and every ``sweep_interval_s`` until ``stop``; a failed sweep is
        logged and tried again at the next one."""
        event(
            log,
            "retention.started",
            videos_days=self.settings.videos_days,
            runs_days=self.settings.runs_days,
        )
        while not stop.is_set():
            try:
                await self.sweep()
            except (StoreUnavailable, StorageError) as exc:
                event(log, "retention.sweep_failed", logging.WARNING, error=str(exc))
            except Exception:
                log.exception("retention.sweep_failed")
            await sleep_until(self.settings.sweep_interval_s, stop)

    async def sweep(self) -> Swept:
        """Delete everything that has expired by the clock's now, a batch at a time."""
        now = self.clock()
        videos = runs = 0
        videos_before = self.settings.videos_before(now)
        if videos_before is not None:
            while True:
                looked, marked = await self._delete_videos(videos_before, now)
                videos += marked
                if looked < self.settings.batch:
                    break
        runs_before = self.settings.runs_before(now)
        if runs_before is not None:
            while True:
                ids = await self.store.delete_expired_runs(runs_before, self.settings.batch)
                for run_id in ids:
                    event(log, "retention.run_deleted", run_id=run_id)
                runs += len(ids)
                if len(ids) < self.settings.batch:
                    break
        if videos or runs:
            event(log, "retention.swept", videos=videos, runs=runs)
            if self.metrics is not None:
                self.metrics.retention_deleted.labels("video").inc(videos)
                self.metrics.retention_deleted.labels("run").inc(runs)
        return Swept(videos, runs)

    async def _delete_videos(self, before: float, now: float) -> tuple[int, int]:
        """One batch: how many runs it looked at, and how many of them it marked (a run
        that another sweeper marked first is that one's deletion)."""
        expired = await self.store.expired_videos(before, self.settings.batch)
        for video in expired:  # the files first: a crash here leaves the run to a later sweep
            await self.storage.delete(video.output_key)
            if video.thumbnail_key is not None:
                await self.storage.delete(video.thumbnail_key)
        marked = set(await self.store.mark_videos_deleted([v.run_id for v in expired], now))
        for video in expired:
            if video.run_id in marked:
                event(
                    log,
                    "retention.video_deleted",
                    run_id=video.run_id,
                    key=video.output_key,
                    thumbnail=video.thumbnail_key,
                )
        return len(expired), len(marked)
