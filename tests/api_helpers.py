"""Small helpers for tests that talk HTTP to a live server, and the two error-shape checks.

Every error answer in the suite goes through :func:`assert_submit_error` or
:func:`assert_status_error`: one helper per wire shape.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import av
import httpx
from PIL import Image

from tests.servers import LiveServer

SMALL = {"resolution": "240p", "duration": 1}


def submit(
    server: LiveServer,
    body: dict[str, Any],
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/generate-video",
        json=body,
        headers={**server.headers(key), **(headers or {})},
        timeout=30,
    )


def submit_ok(
    server: LiveServer,
    prompt: str = "a test card",
    key: str | None = None,
    model: str = "testcard-video",
    **params: Any,
) -> str:
    response = submit(server, {"model": model, "prompt": prompt, **SMALL, **params}, key)
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


def status(
    server: LiveServer, run_id: str, key: str | None = None, model: str = "testcard-video"
) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/api/generate-video/status",
        params={"runId": run_id, "modelSlug": model},
        headers=server.headers(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def unified(server: LiveServer, run_id: str, key: str | None = None) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/api/video/status",
        params={"runId": run_id},
        headers=server.headers(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    server: LiveServer,
    run_id: str,
    statuses: set[str],
    timeout: float = 60,
    key: str | None = None,
    model: str = "testcard-video",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = status(server, run_id, key, model)
        if data["status"] in statuses:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {data} after {timeout} s")
        time.sleep(0.1)


def wait_terminal(
    server: LiveServer,
    run_id: str,
    timeout: float = 60,
    key: str | None = None,
    model: str = "testcard-video",
) -> dict[str, Any]:
    return wait_for(server, run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout, key, model)


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    frames: int
    duration_s: float


def decode_mp4(data: bytes) -> VideoInfo:
    """Decode every frame (not just the header) and report what is really there."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration or 0) / 1_000_000
        return VideoInfo(stream.codec_context.name, stream.width, stream.height, frames, duration)


def poster_size(width: int, height: int) -> tuple[int, int]:
    """The size of the poster of a ``width`` x ``height`` video: its own, or scaled down to
    640 pixels wide."""
    if width <= 640:
        return width, height
    return 640, round(height * 640 / width)


def decode_jpeg(data: bytes) -> tuple[int, int]:
    """Decode a JPEG (all of it, not just its header); its size."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        image.load()
        return image.size


def assert_submit_error(response: httpx.Response, status_code: int, type_: str) -> str:
    """The submit envelope: ``{"error": {"message", "type"}, "status": N}``."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "status"}, body
    assert body["status"] == status_code
    assert set(body["error"]) == {"message", "type"}, body
    assert body["error"]["type"] == type_, body
    message: str = body["error"]["message"]
    assert isinstance(message, str) and len(message) > 10, body
    return message


def assert_status_error(response: httpx.Response, status_code: int) -> str:
    """The upstream ``Error`` schema: ``{"error": N, "message": "..."}``."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == status_code
    message: str = body["message"]
    assert isinstance(message, str) and len(message) > 10, body
    return message
