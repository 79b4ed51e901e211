# ruff: noqa: E501  (the upstream sample below is kept verbatim)
"""The sample client from the upstream status page, unchanged but for its base URL and key.

The code between the markers is the upstream page's Python example as published
(../shared/spec/upstream-video-status.md); only ``BASE`` is pointed at the live server.
"""

from __future__ import annotations

import httpx

from tests.api_helpers import decode_mp4
from tests.servers import LiveServer

UPSTREAM_SAMPLE = """
import requests
import time

BASE = "https://nano-gpt.com/api"

def get_video_status(run_id: str, model_slug: str, api_key: str) -> dict:
    resp = requests.get(
        f"{BASE}/generate-video/status",
        headers={"x-api-key": api_key},
        params={"runId": run_id, "modelSlug": model_slug},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()


def wait_for_video(run_id: str, model_slug: str, api_key: str, max_attempts: int = 120, delay_s: int = 5) -> str:
    for i in range(max_attempts):
        data = get_video_status(run_id, model_slug, api_key)
        status = data.get("data", {}).get("status")
        if status == "COMPLETED":
            return data["data"]["output"]["video"]["url"]
        if status == "FAILED":
            raise RuntimeError(data.get("data", {}).get("error", "Video generation failed"))
        time.sleep(delay_s)
    raise TimeoutError("Video generation timed out")
"""


def load_sample(base: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(UPSTREAM_SAMPLE, "upstream_sample", "exec"), namespace)
    namespace["BASE"] = base  # the one change: where the API lives
    return namespace


def test_upstream_wait_for_video_returns_a_playable_url(live_server: LiveServer) -> None:
    submitted = httpx.post(
        f"{live_server.base_url}/api/generate-video",
        headers={"x-api-key": live_server.api_key},
        json={
            "model": "testcard-video",
            "prompt": "an eagle over mountains",
            "duration": "3s",
            "aspect_ratio": "16:9",
            "resolution": "480p",
        },
    )
    assert submitted.status_code == 202
    run_id = submitted.json()["runId"]
    sample = load_sample(f"{live_server.base_url}/api")
    wait_for_video = sample["wait_for_video"]
    url = wait_for_video(run_id, "testcard-video", live_server.api_key, 60, 1)  # type: ignore[operator]
    video = httpx.get(url)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    info = decode_mp4(video.content)
    assert (info.codec, info.width, info.height) == ("h264", 854, 480)
    assert abs(info.duration_s - 3.0) < 0.05 and info.frames == 72


def test_upstream_wait_for_video_raises_the_error_of_a_failed_run(
    live_server: LiveServer,
) -> None:
    submitted = httpx.post(
        f"{live_server.base_url}/api/generate-video",
        headers={"x-api-key": live_server.api_key},
        json={
            "model": "testcard-video",
            "prompt": "sandbox:fail",
            "duration": 1,
            "resolution": "240p",
        },
    )
    sample = load_sample(f"{live_server.base_url}/api")
    wait_for_video = sample["wait_for_video"]
    try:
        wait_for_video(submitted.json()["runId"], "testcard-video", live_server.api_key, 60, 1)  # type: ignore[operator]
    except RuntimeError as exc:
        assert "sandbox:fail" in str(exc)
    else:
        raise AssertionError("the failed run was reported as a success")
