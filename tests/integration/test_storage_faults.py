"""Storage that cannot be written (a full disk): the write fails with a message an operator
can act on and leaves nothing behind (a write succeeds once there is room again); a run
whose video cannot be stored fails with that message, and the worker goes on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults import fill, small_filesystem
from tests.integration.test_worker_shutdown import CATALOG, submit_testcard_run
from vidgate.backends.base import FAILED_FRIENDLY
from vidgate.backends.testcard import TestcardBackend
from vidgate.config import WorkerSettings
from vidgate.runs.status import Status
from vidgate.storage.base import StorageWriteFailed
from vidgate.storage.local import LocalStorage
from vidgate.store.records import RunRecord
from vidgate.store.sql import SQLStore
from vidgate.worker.local import LocalWorker

FULL = r"the storage directory .* is full \(no space left on its device\); free space there"


async def test_writes_to_a_full_disk_fail_clearly_and_leave_nothing(tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"  # another file system: the move is a copy
    source.write_bytes(os.urandom(300_000))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(30_000)

    with small_filesystem(tmp_path / "files", "1m") as files:
        storage = LocalStorage(files, b"s" * 32)
        filler = fill(files)
        with pytest.raises(StorageWriteFailed, match=FULL):
            await storage.put_file("vid_1/1-ab.mp4", source, "video/mp4")
        with pytest.raises(StorageWriteFailed, match=FULL):
            await storage.put_stream("vid_1/2-ab.mp4", chunks(), "video/mp4")
        left = [p.name for p in files.rglob("*") if p.is_file()]
        assert left == ["filler"], left  # no partial file
        assert source.stat().st_size == 300_000  # the source is intact
        filler.unlink()
        stored = await storage.put_file("vid_1/1-ab.mp4", source, "video/mp4")
        assert stored.size == 300_000 and (files / "vid_1" / "1-ab.mp4").is_file()


async def test_a_run_whose_video_cannot_be_stored_fails_with_the_reason(tmp_path: Path) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with small_filesystem(tmp_path / "files", "1m") as files:
        worker = LocalWorker(
            store,
            LocalStorage(files, b"s" * 32),
            CATALOG,
            {"testcard": TestcardBackend()},
            WorkerSettings(heartbeat_s=0.1, idle_poll_s=0.05),
            tmp_path / "work",  # renders on another file system, which has room
            owner="w1",
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            fill(files)
            failed = await _finished(store, await submit_testcard_run(store, "no room"))
            assert failed.status is Status.FAILED
            assert failed.error is not None
            assert failed.error.startswith("could not store the video"), failed.error
            assert "is full (no space left on its device); free space there" in failed.error
            assert failed.user_friendly_error == FAILED_FRIENDLY
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await store.close()


async def _finished(store: SQLStore, run: RunRecord) -> RunRecord:
    for _ in range(300):
        current = await store.get(run.id)
        if current.status.is_terminal:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run.id} did not finish: {current}")
