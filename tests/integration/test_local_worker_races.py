"""Races of the local worker: a cancel that lands while the video moves into storage, and
a wake-up that comes while the worker is claiming."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.worker_helpers import CATALOG, submit_testcard_run
from vidgate.backends.testcard import TestcardBackend
from vidgate.config import WorkerSettings
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.errors import StoreUnavailable
from vidgate.store.sql import SQLStore
from vidgate.worker import local as local_module
from vidgate.worker.local import LocalWorker


def _worker(store: SQLStore, tmp_path: Path, **settings: Any) -> LocalWorker:
    return LocalWorker(
        store,
        LocalStorage(tmp_path / "files", b"s" * 32),
        CATALOG,
        {"testcard": TestcardBackend()},
        WorkerSettings(**{"lease_s": 30, "heartbeat_s": 0.1, **settings}),
        tmp_path / "work",
        owner="w",
    )


async def test_a_cancel_while_the_video_is_stored_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow disk: the video is in storage, but the move answers only after the cancel.
    moved, may_answer = threading.Event(), threading.Event()
    real_move = shutil.move

    def slow_move(source: Any, target: Any) -> Any:
        result = real_move(source, target)
        moved.set()
        may_answer.wait(30)
        return result

    monkeypatch.setattr(shutil, "move", slow_move)
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    worker = _worker(store, tmp_path, idle_poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        run = await submit_testcard_run(store, "cancelled while stored")
        assert await asyncio.to_thread(moved.wait, 60)
        await store.cancel(run.id, "k")
        worker.stop_run(run.id)  # as the run event of the cancel makes the worker do
        may_answer.set()
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        assert (await store.get(run.id)).status is Status.CANCELLED
        left = [p.relative_to(tmp_path) for p in (tmp_path / "files").rglob("*") if p.is_file()]
        assert left == []
    finally:
        may_answer.set()
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_wake_up_during_a_claim_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    # Idle, the worker looks for work only every 60 s: a lost wake-up keeps the run waiting.
    worker = _worker(store, tmp_path, idle_poll_s=60)
    real_claim = store.claim_next
    submitted: list[str] = []

    async def claim_next(*args: Any, **kwargs: Any) -> Any:
        claimed = await real_claim(*args, **kwargs)
        if not submitted:  # a run submitted while this claim was on its way back
            submitted.append((await submit_testcard_run(store, "meanwhile")).id)
            worker.wake()  # as the run event of the submit makes the worker do
        return claimed

    monkeypatch.setattr(store, "claim_next", claim_next)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(200):
            if submitted and (await store.get(submitted[0])).status is not Status.IN_QUEUE:
                break
            await asyncio.sleep(0.05)
        assert submitted and (await store.get(submitted[0])).status is not Status.IN_QUEUE
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await store.close()


class AwayAtTheEnd(SQLStore):
    """A store whose database goes away just as a finished render is to be recorded."""

    tries = 0

    async def transition(self, run_id: str, to: Status, **kwargs: Any) -> Any:
        if to is Status.COMPLETED:
            self.tries += 1
            raise StoreUnavailable("the database is unavailable: it cannot be reached")
        return await super().transition(run_id, to, **kwargs)


async def test_a_stop_while_a_finished_render_waits_for_the_database_ends_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "KEEP_GRACE_S", 0.5, raising=False)
    store = await AwayAtTheEnd.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    worker = _worker(store, tmp_path, idle_poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        run = await submit_testcard_run(store, "finished during an outage")
        while store.tries < 2:  # the outcome waits for the database
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)  # the wait does not hold up the stop
        # The video stays: a commit whose answer was lost could point the run at it.
        assert (await store.get(run.id)).status is Status.IN_PROGRESS
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
