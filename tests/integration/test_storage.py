"""The storage port, the same cases against a local directory and an S3 bucket (the moto
emulator): videos stored from files and from streams (multipart when large), deleted,
served by signed URLs that need no API key, are stable for half their lifetime and honour
``Range``; failures to write say what to do."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.s3 import REGION, Bucket
from tests.servers import serving
from vidgate.config import Settings
from vidgate.server.app import create_app
from vidgate.services import build_storage
from vidgate.storage.base import Storage, StorageError, StorageWriteFailed
from vidgate.storage.local import LocalStorage
from vidgate.storage.s3 import PART_BYTES, S3Storage

TTL_S = 3600


@dataclass
class Case:
    kind: str
    storage: Storage
    base_url: str
    """This server's URL (local URLs point at its ``/files``; S3 URLs at the bucket)."""
    settings: Settings

    def url(self, key: str) -> str:
        return self.storage.signed_url(key, self.base_url, TTL_S)[0]


def s3_settings(bucket: Bucket, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "storage": {
                "url": bucket.url(),
                "endpoint_url": bucket.server.endpoint,
                "region": REGION,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
        }
    )


@pytest.fixture(params=["local", "s3"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Case]:
    """Storage as ``vidgate serve`` builds it from settings; a local directory is served by
    the real app (its ``/files`` route) on a loopback port."""
    if request.param == "s3":
        settings = s3_settings(request.getfixturevalue("s3_bucket"), tmp_path)
        storage = build_storage(settings)
        assert isinstance(storage, S3Storage)
        yield Case("s3", storage, "http://127.0.0.1:9", settings)
        return
    settings = Settings.model_validate({"data_dir": str(tmp_path / "data")})
    storage = build_storage(settings)
    assert isinstance(storage, LocalStorage)
    async with serving(create_app(settings)) as base_url:
        yield Case("local", storage, base_url, settings)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client with no API key: signed URLs must work without one."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def test_put_file_moves_the_file_and_its_url_downloads_without_a_key(
    case: Case, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    source = tmp_path / "render.mp4"
    data = random_file(source, 300_000)
    stored = await case.storage.put_file("vid_a/1-ab.mp4", source, "video/mp4")
    assert (stored.key, stored.size, stored.content_type) == (
        "vid_a/1-ab.mp4",
        300_000,
        "video/mp4",
    )
    assert not source.exists()  # moved, as a render is
    response = await http.get(case.url("vid_a/1-ab.mp4"))
    assert response.status_code == 200, response.text
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"


def pseudo_random_chunks(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """Distinct, deterministic chunks (a repeated chunk could hide a part stored twice)."""
    for start in range(0, total, chunk):
        yield hashlib.sha256(str(start).encode()).digest() * (min(chunk, total - start) // 32)


async def test_put_stream_larger_than_a_part_stores_every_byte(
    case: Case, http: httpx.AsyncClient
) -> None:
    total = 3 * PART_BYTES + 1024 * 1024  # four parts, the last one short
    expected = hashlib.sha256()
    made = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal made
        for chunk in pseudo_random_chunks(total):
            expected.update(chunk)
            made += len(chunk)
            yield chunk

    stored = await case.storage.put_stream("vid_b/1-ab.mp4", chunks(), "video/mp4")
    assert stored.size == made == total
    got = hashlib.sha256()
    async with http.stream("GET", case.url("vid_b/1-ab.mp4")) as response:
        assert response.status_code == 200
        async for block in response.aiter_bytes():
            got.update(block)
    assert got.hexdigest() == expected.hexdigest()
    if case.kind == "s3":  # a multipart upload's ETag ends with its number of parts
        assert response.headers["etag"].strip('"').endswith("-4"), response.headers["etag"]


async def test_delete_removes_the_video_and_tolerates_a_missing_one(
    case: Case, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    source = tmp_path / "render.mp4"
    random_file(source, 1000)
    await case.storage.put_file("vid_c/1-ab.mp4", source, "video/mp4")
    url = case.url("vid_c/1-ab.mp4")
    assert (await http.get(url)).status_code == 200
    await case.storage.delete("vid_c/1-ab.mp4")
    await case.storage.delete("vid_c/1-ab.mp4")  # already gone: nothing happens
    assert (await http.get(url)).status_code == 404


async def test_a_url_is_the_same_for_half_its_lifetime_then_renewed(
    case: Case, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    source = tmp_path / "render.mp4"
    data = random_file(source, 1000)
    await case.storage.put_file("vid_d/1-ab.mp4", source, "video/mp4")
    completed = time.time()
    first, expires = case.storage.signed_url(
        "vid_d/1-ab.mp4", case.base_url, TTL_S, issued_from=completed
    )
    assert expires == int(completed + TTL_S)
    if case.kind == "s3":
        time.sleep(1.05)  # a presigned URL names the second it was signed: not this one
    assert case.storage.signed_url(
        "vid_d/1-ab.mp4", case.base_url, TTL_S, issued_from=completed
    ) == (first, expires)
    later = completed + TTL_S / 2 - 1  # a poll just before the half: the same URL
    again = case.storage.signed_url(
        "vid_d/1-ab.mp4", case.base_url, TTL_S, issued_from=completed, now=later
    )
    assert again == (first, expires)
    renewed, renewed_expires = case.storage.signed_url(
        "vid_d/1-ab.mp4", case.base_url, TTL_S, issued_from=completed, now=completed + TTL_S / 2
    )
    assert renewed != first and renewed_expires == expires + TTL_S // 2
    for url in (first, renewed):
        response = await http.get(url)
        assert response.status_code == 200 and response.content == data


async def test_a_range_request_gets_206_and_those_bytes(
    case: Case, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    source = tmp_path / "render.mp4"
    data = random_file(source, 50_000)
    await case.storage.put_file("vid_e/1-ab.mp4", source, "video/mp4")
    response = await http.get(case.url("vid_e/1-ab.mp4"), headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == data[1000:2000]
    assert response.headers["content-range"] == "bytes 1000-1999/50000"


def unwritable(case: Case, tmp_path: Path) -> tuple[Storage, str]:
    """Storage of the same kind that cannot be written, and the advice its failures give."""
    if case.kind == "s3":
        url = f"s3://no-such-bucket-{os.urandom(4).hex()}/videos"
        storage = case.settings.storage.model_copy(update={"url": url})
        where = f"{url} at {case.settings.storage.endpoint_url}"
        return build_storage(case.settings.model_copy(update={"storage": storage})), re.escape(
            f"the bucket {where} does not exist; create it, or correct storage.url"
        )
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage directory should be")
    advice = f"writing to the storage directory {blocked} failed"
    return LocalStorage(blocked, b"s" * 32), re.escape(advice)


async def test_write_failures_say_what_to_do_and_leave_the_source(
    case: Case, tmp_path: Path
) -> None:
    storage, advice = unwritable(case, tmp_path)
    source = tmp_path / "render.mp4"
    random_file(source, 10_000)
    with pytest.raises(
        StorageWriteFailed, match="could not store the video vid_f/1-ab.mp4: " + advice
    ):
        await storage.put_file("vid_f/1-ab.mp4", source, "video/mp4")
    assert source.stat().st_size == 10_000  # the render is still there for another try

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000

    with pytest.raises(StorageWriteFailed, match=advice):
        await storage.put_stream("vid_f/2-ab.mp4", chunks(), "video/mp4")


async def test_the_readiness_check_passes_and_fails_where_writes_would(
    case: Case, tmp_path: Path
) -> None:
    await case.storage.check()
    storage, _ = unwritable(case, tmp_path)
    with pytest.raises(StorageError):
        await storage.check()


class SourceBroke(Exception):
    pass


async def test_a_failing_stream_raises_its_own_error_and_stores_nothing(
    case: Case, http: httpx.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * (PART_BYTES + 1)  # a part already uploaded
        raise SourceBroke("the provider closed the connection")

    with pytest.raises(SourceBroke):
        await case.storage.put_stream("vid_g/1-ab.mp4", chunks(), "video/mp4")
    assert (await http.get(case.url("vid_g/1-ab.mp4"))).status_code == 404


async def test_a_cancelled_stream_stores_nothing_and_stops(
    case: Case, http: httpx.AsyncClient
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * (PART_BYTES + 1)
        started.set()
        try:
            await asyncio.sleep(3600)  # a provider that stalls
        finally:
            stopped.set()
        yield b"never"

    upload = asyncio.create_task(case.storage.put_stream("vid_h/1-ab.mp4", chunks(), "video/mp4"))
    await asyncio.wait_for(started.wait(), 10)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    await asyncio.wait_for(stopped.wait(), 5)  # nothing left waiting on the stream
    assert (await http.get(case.url("vid_h/1-ab.mp4"))).status_code == 404


async def test_a_cancelled_stream_that_keeps_flowing_stores_nothing_and_stops(
    case: Case, http: httpx.AsyncClient
) -> None:
    drawn = 0
    total = 40

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal drawn
        for _ in range(total):  # a fast provider: a chunk every 20 ms
            drawn += 1
            yield b"y" * (1024 * 1024)
            await asyncio.sleep(0.02)

    upload = asyncio.create_task(case.storage.put_stream("vid_i/1-ab.mp4", chunks(), "video/mp4"))
    while drawn < 5:
        await asyncio.sleep(0.01)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    at_cancel = drawn
    await asyncio.sleep(1.5)
    assert drawn <= at_cancel + 2, (at_cancel, drawn)  # it stopped drawing the source
    assert drawn < total
    assert (await http.get(case.url("vid_i/1-ab.mp4"))).status_code == 404


async def test_a_local_url_with_a_forged_signature_is_refused(
    case: Case, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    if case.kind != "local":
        pytest.skip("the bucket checks its own signatures")
    source = tmp_path / "render.mp4"
    random_file(source, 1000)
    await case.storage.put_file("vid_j/1-ab.mp4", source, "video/mp4")
    url = case.url("vid_j/1-ab.mp4")
    assert (await http.get(url)).status_code == 200
    for forged in ("AAAA", "caf\u00e9"):  # one not even ASCII: refused, not a crash
        signed = re.sub(r"sig=[^&]+", f"sig={forged}", url)
        refused = await http.get(signed)
        assert refused.status_code == 403, (forged, refused.status_code, refused.text)
