"""``vidgate serve`` on SQLite with its videos in an S3 bucket (the moto emulator), set up by
environment variables alone: a testcard run completes, its video is in the bucket, the
presigned URL downloads it without the API key, and ``/api/generate-video/content``
redirects there."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.api_helpers import assert_status_error, decode_mp4, submit_ok, wait_terminal
from tests.s3 import Bucket
from tests.servers import TEST_CONFIG, LiveServer


def test_a_run_on_sqlite_keeps_its_video_in_s3(tmp_path: Path, s3_bucket: Bucket) -> None:
    server = LiveServer(tmp_path / "data", TEST_CONFIG, env=s3_bucket.env(prefix="gw"))
    server.api_key = server.create_key("test")
    server.start()
    try:
        run_id = submit_ok(server, "kept in a bucket")
        final = wait_terminal(server, run_id)
        assert final["status"] == "COMPLETED", final
        url = final["output"]["video"]["url"]
        assert url.startswith(f"{s3_bucket.server.endpoint}/{s3_bucket.name}/gw/{run_id}/")
        video_key = f"gw/{run_id}/{url.split('?')[0].rsplit('/', 1)[1]}"
        assert s3_bucket.keys() == [video_key, f"{video_key}.thumb.jpg"]  # and its poster
        assert not list((server.data_dir / "files").glob("**/*.mp4"))  # nothing kept locally

        video = httpx.get(url, timeout=30)  # no API key
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert decode_mp4(video.content).frames == 24
        assert wait_terminal(server, run_id)["output"]["video"]["url"] == url  # stable

        content = httpx.get(
            f"{server.base_url}/api/generate-video/content",
            params={"runId": run_id},
            headers=server.headers(),
            timeout=30,
        )
        assert content.status_code == 302
        assert content.headers["location"] == url
        assert httpx.get(content.headers["location"], timeout=30).content == video.content

        # /files/ serves local storage only; its answer says where the video is instead.
        files = httpx.get(f"{server.base_url}/files/{run_id}/x.mp4?exp=1&sig=x", timeout=30)
        assert "S3 bucket" in assert_status_error(files, 404)
    finally:
        server.stop()
    # Ended by its SIGTERM, as with local storage; not aborted as the interpreter exits.
    assert server.process is not None and server.process.returncode == -signal.SIGTERM
    log = server.log()
    assert f"Videos are kept in s3://{s3_bucket.name}/gw ({s3_bucket.server.endpoint})" in log
    assert "testing" not in log  # the credentials are not shown
