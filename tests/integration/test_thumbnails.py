"""Poster frames: every finished video gets one, served by its signed URL (the unified
status's ``thumbnailUrl``) and by the content route's ``variant=thumbnail``; one that
cannot be made never fails the run."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.api_helpers import (
    assert_status_error,
    decode_jpeg,
    decode_mp4,
    poster_size,
    submit_ok,
    unified,
    wait_terminal,
)
from tests.servers import LiveServer
from vidgate.storage.local import LocalStorage
from vidgate.worker.thumbnails import MAX_WIDTH, store_thumbnail


def test_a_testcard_video_gets_a_poster_of_its_size(live_server: LiveServer) -> None:
    # 240p is kept at its size; 480p (854 px wide) is scaled down to 640 px.
    runs = [submit_ok(live_server, "poster", resolution=r) for r in ("240p", "480p")]
    for run_id in runs:
        assert wait_terminal(live_server, run_id)["status"] == "COMPLETED"
        body = unified(live_server, run_id)
        video = decode_mp4(httpx.get(body["videoUrl"], timeout=30).content)
        poster = httpx.get(body["thumbnailUrl"], timeout=30)  # no API key: it is signed
        assert poster.status_code == 200, poster.text
        assert poster.headers["content-type"] == "image/jpeg"
        assert decode_jpeg(poster.content) == poster_size(video.width, video.height)
        # Polls within half the URL's lifetime give the same URL, as for the video.
        assert unified(live_server, run_id)["thumbnailUrl"] == body["thumbnailUrl"]

        content = f"{live_server.base_url}/api/generate-video/content"
        params = {"runId": run_id, "model": "testcard-video", "variant": "thumbnail"}
        redirect = httpx.get(content, params=params, headers=live_server.headers())
        assert redirect.status_code == 302
        assert httpx.get(redirect.headers["location"]).content == poster.content
    assert decode_jpeg(poster.content)[0] == MAX_WIDTH


def test_content_variants_name_what_is_served(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:fail")
    assert wait_terminal(live_server, run_id)["status"] == "FAILED"
    content = f"{live_server.base_url}/api/generate-video/content"
    for variant, code, needle in (
        ("spritesheet", 400, "use variant=video (the default) or variant=thumbnail"),
        ("thumbnail", 404, "has no video yet (status FAILED)"),
    ):
        answer = httpx.get(
            content, params={"runId": run_id, "variant": variant}, headers=live_server.headers()
        )
        assert needle in assert_status_error(answer, code)


async def test_a_poster_that_cannot_be_made_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path / "files", b"s" * 32)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with caplog.at_level(logging.WARNING, logger="vidgate"):
        key = await store_thumbnail(storage, broken, "vid_x/1-a.mp4", "vid_x")
    assert key is None
    assert any("thumbnail.failed run_id=vid_x" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]
