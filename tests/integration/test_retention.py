"""Retention deletes what it should and nothing else, by a clock the test controls: on SQLite
and PostgreSQL, with videos in a local directory and in an S3 bucket (the moto emulator).

Runs are made through the store's own verbs (submit, transitions), their files stored
through the storage port; then each run's completion (or creation) is moved back to the
age the case needs. Two sweepers sweep at once, as two worker processes would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from tests.api_helpers import assert_status_error
from tests.integration.test_storage import s3_settings
from tests.s3 import Bucket
from tests.servers import serving
from vidgate.config import Settings
from vidgate.config_retention import DAY_S, RetentionSettings
from vidgate.runs.ids import new_run_id
from vidgate.runs.status import Status
from vidgate.server.app import create_app
from vidgate.services import Services, build_catalog, build_storage
from vidgate.storage.base import Storage
from vidgate.storage.local import LocalStorage
from vidgate.store.records import NewRun
from vidgate.store.schema import runs, webhook_deliveries
from vidgate.store.sql import SQLStore
from vidgate.worker.retention import RetentionSweeper
from vidgate.worker.runtime import run_worker

NOW = 1_900_000_000.0
"""The sweepers' clock (2030): every age below is counted back from it."""
POLICY = RetentionSettings(videos_days=30, runs_days=60, batch=2)
"""A batch of two makes a sweep take several steps."""


@dataclass
class World:
    settings: Settings
    store: SQLStore
    storage: Storage
    bucket: Bucket | None
    files: dict[str, list[str]] = field(default_factory=dict)
    """Run id -> the keys of its video and thumbnail."""

    def stored(self) -> set[str]:
        """Every key in storage now."""
        if self.bucket is None:
            assert isinstance(self.storage, LocalStorage)
            root = self.storage.root
            return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        return {key.removeprefix("videos/") for key in self.bucket.keys()}  # noqa: SIM118


@pytest.fixture(params=["local", "s3"])
async def world(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[World]:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        settings = s3_settings(bucket, tmp_path).model_copy(update={"database_url": database_url})
    else:
        bucket = None
        settings = Settings.model_validate(
            {"data_dir": str(tmp_path / "data"), "database_url": database_url}
        )
    settings = settings.model_copy(update={"retention": POLICY})
    store = await SQLStore.open(database_url)
    try:
        yield World(settings, store, build_storage(settings), bucket)
    finally:
        await store.close()


async def make_run(
    world: World, status: Status, age_days: float, *, video: bool = False, now: float = NOW
) -> str:
    """A run now in ``status`` that completed (or, in flight, was created) ``age_days``
    before ``now``, with a webhook (so it has deliveries) and, if ``video``, a stored
    video and thumbnail."""
    store = world.store
    run, _ = await store.submit(
        NewRun(
            id=new_run_id(),
            api_key_id="k",
            model="testcard-video",
            backend="testcard",
            request={"model": "testcard-video", "prompt": "p", "extra": {}},
            cost=0,
            available_at=time.time() + 3600,  # no worker here, but never claimable anyway
            webhook_url="https://hooks.example/v",
        ),
        idempotency_ttl_s=60,
    )
    if status is not Status.IN_QUEUE:
        assert await store.transition(run.id, Status.IN_PROGRESS, started_at=time.time())
    values: dict[str, object] = {}
    if video:
        keys = [f"{run.id}/1-a.mp4", f"{run.id}/1-a.mp4.thumb.jpg"]
        for stored_key, body in zip(
            keys, (b"\x00\x00\x00\x18ftypmp42", b"\xff\xd8\xff"), strict=True
        ):
            source = Path(world.settings.data_dir) / "upload"
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(body)
            await world.storage.put_file(stored_key, source, "application/octet-stream")
        values = {"output_key": keys[0], "thumbnail_key": keys[1], "output_size": 12}
        world.files[run.id] = keys
    if status.is_terminal:
        assert await store.transition(run.id, status, **values)
    at = now - age_days * DAY_S
    column = "completed_at" if status.is_terminal else "created_at"
    await store._write(
        lambda tx: tx.conn.execute(update(runs).where(runs.c.id == run.id).values({column: at}))
    )
    return run.id


async def deliveries_of(store: SQLStore, run_id: str) -> int:
    query = webhook_deliveries.select().where(webhook_deliveries.c.run_id == run_id)
    return len(await store._read(lambda conn: conn.execute(query).all()))


async def test_the_sweep_deletes_exactly_what_expired(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    store = world.store
    expired_video = await make_run(world, Status.COMPLETED, 40, video=True)
    expired_too = await make_run(world, Status.COMPLETED, 45, video=True)
    expired_row = await make_run(world, Status.COMPLETED, 70, video=True)
    young = await make_run(world, Status.COMPLETED, 29.9, video=True)
    failed_kept = await make_run(world, Status.FAILED, 40)
    failed_gone = await make_run(world, Status.FAILED, 61)
    cancelled_gone = await make_run(world, Status.CANCELLED, 90)
    running = await make_run(world, Status.IN_PROGRESS, 100)
    queued = await make_run(world, Status.IN_QUEUE, 100)
    assert await deliveries_of(store, expired_row) > 0
    before = world.stored()
    assert before == {key for keys in world.files.values() for key in keys}

    # Two workers sweep at once (on PostgreSQL, on two connections pools of their own).
    other = await SQLStore.open(world.settings.resolved_database_url)
    try:
        sweepers = [
            RetentionSweeper(s, world.storage, POLICY, clock=lambda: NOW) for s in (store, other)
        ]
        with caplog.at_level(logging.INFO, logger="vidgate"):
            swept = await asyncio.gather(*(s.sweep() for s in sweepers))
    finally:
        await other.close()
    assert sum(s.videos for s in swept) == 3
    assert sum(s.runs for s in swept) == 3

    gone = {expired_video, expired_too, expired_row}
    assert world.stored() == {
        key for run_id in world.files if run_id not in gone for key in world.files[run_id]
    }
    assert world.stored() == set(world.files[young])
    # Each deletion is logged once, by the sweeper that made it, with its run.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention.")]
    for run_id in (expired_video, expired_too, expired_row):
        assert sum(f"retention.video_deleted run_id={run_id}" in line for line in lines) == 1
    for run_id in (expired_row, failed_gone, cancelled_gone):
        assert sum(f"retention.run_deleted run_id={run_id}" in line for line in lines) == 1

    for run_id in (expired_row, failed_gone, cancelled_gone):
        assert await store.poll_run(run_id) is None
        assert await deliveries_of(store, run_id) == 0
    for run_id in (expired_video, expired_too):
        row = await store.poll_run(run_id)
        assert row is not None and row.status is Status.COMPLETED
        assert row.output_deleted_at == NOW and row.output_key is not None
    for run_id, status in (
        (young, Status.COMPLETED),
        (failed_kept, Status.FAILED),
        (running, Status.IN_PROGRESS),
        (queued, Status.IN_QUEUE),
    ):
        row = await store.poll_run(run_id)
        assert row is not None and row.status is status and row.output_deleted_at is None
    assert await deliveries_of(store, failed_kept) > 0

    # Nothing more to do at the same moment; the young video goes when it is 30 days old.
    again = RetentionSweeper(store, world.storage, POLICY, clock=lambda: NOW)
    assert (await again.sweep()).videos == 0
    later = RetentionSweeper(store, world.storage, POLICY, clock=lambda: NOW + 0.2 * DAY_S)
    assert (await later.sweep()).videos == 1
    assert world.stored() == set()
    running_row = await store.poll_run(running)
    assert running_row is not None and running_row.status is Status.IN_PROGRESS

    await poll_of_a_swept_run(world, expired_video)


async def poll_of_a_swept_run(world: World, run_id: str) -> None:
    """What a client sees of a run whose video retention deleted."""
    key, secret = await world.store.create_key("swept")
    await world.store._write(
        lambda tx: tx.conn.execute(
            update(runs).where(runs.c.id == run_id).values(api_key_id=key.id)
        )
    )
    headers = {"x-api-key": secret}
    async with (
        serving(create_app(world.settings)) as base,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http,
    ):
        body = (await http.get("/api/video/status", params={"requestId": run_id})).json()
        assert body["status"] == "completed" and body["videoUrl"] is None
        assert body["videoDeleted"] is True and body["data"]["videoDeleted"] is True
        assert "retention policy" in body["videoDeletedReason"]
        assert "thumbnailUrl" not in body and "output" not in body["data"]
        legacy = await http.get(
            "/api/generate-video/status", params={"runId": run_id, "modelSlug": "testcard-video"}
        )
        assert legacy.json()["data"]["status"] == "COMPLETED"
        assert legacy.json()["data"]["videoDeleted"] is True
        for variant in ("video", "thumbnail"):
            content = await http.get(
                "/api/generate-video/content", params={"runId": run_id, "variant": variant}
            )
            message = assert_status_error(content, 410)
            assert "retention" in message and "videos_days" in message and "30 days" in message


async def test_a_worker_process_sweeps_when_retention_is_set(tmp_path: Path) -> None:
    """The sweep runs in every worker (``vidgate worker`` and ``serve``'s own), by the
    real clock: a video 31 days old goes, with ``videos_days = 30``."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path / "data"), "database_url": url, "retention": {"videos_days": 30}}
    )
    store = await SQLStore.open(url)
    world = World(settings, store, build_storage(settings), None)
    stop = asyncio.Event()
    try:
        old = await make_run(world, Status.COMPLETED, 31, video=True, now=time.time())
        kept = await make_run(world, Status.COMPLETED, 29, video=True, now=time.time())
        services = Services(settings, store, world.storage, build_catalog(settings))
        worker = asyncio.create_task(run_worker(services, stop))
        deadline = time.monotonic() + 20
        while (row := await store.poll_run(old)) is not None and row.output_deleted_at is None:
            assert time.monotonic() < deadline and not worker.done(), "no sweep happened"
            await asyncio.sleep(0.05)
        stop.set()
        await worker
        assert world.stored() == set(world.files[kept])
        count = services.metrics.registry.get_sample_value
        assert count("vidgate_retention_deleted_total", {"what": "video"}) == 1
        assert count("vidgate_retention_deleted_total", {"what": "run"}) == 0
    finally:
        stop.set()
        await store.close()
