"""Configuration and request building, shared by both clients: no I/O."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vidgate import AsyncClient, Client, GenerationFailed, RunStatus, VideoNotReady, VideoStatus
from vidgate.client._base import (
    DEFAULT_BASE_URL,
    BaseClient,
    normalise_base_url,
    settings_from_env,
)
from vidgate.client._retry import RetryMode
from vidgate.client._wait import PollStep


@pytest.mark.parametrize(
    "url",
    [
        "https://nano-gpt.com",
        "https://nano-gpt.com/",
        "https://nano-gpt.com/api",
        " https://nano-gpt.com/api/ ",
    ],
)
def test_base_url_forms(url: str) -> None:
    assert normalise_base_url(url) == "https://nano-gpt.com"


@pytest.mark.parametrize("url", ["", "nano-gpt.com", "ftp://host", "http://"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        BaseClient(url)


def test_bad_timeouts_and_retries() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        BaseClient("http://h", timeout_s=0)
    with pytest.raises(ValueError, match="max_retries"):
        BaseClient("http://h", max_retries=-1)


def test_settings_from_env_only_when_asked() -> None:
    assert settings_from_env({}) == {"base_url": DEFAULT_BASE_URL}
    env = {"VIDGATE_BASE_URL": "http://gw:9000", "VIDGATE_API_KEY": "k1"}
    assert settings_from_env(env) == {"base_url": "http://gw:9000", "api_key": "k1"}


def test_from_env_factories_and_overrides() -> None:
    env = {"VIDGATE_BASE_URL": "http://gw:9000/", "VIDGATE_API_KEY": "k1"}
    with Client.from_env(environ=env, timeout_s=5) as client:
        assert client.base_url == "http://gw:9000"
        assert client.api_key == "k1"
        assert client.timeout_s == 5
    with Client.from_env(environ=env, api_key="k2") as client:
        assert client.api_key == "k2"


async def test_async_from_env() -> None:
    async with AsyncClient.from_env(environ={"VIDGATE_API_KEY": "k"}) as client:
        assert client.base_url == DEFAULT_BASE_URL and client.api_key == "k"


def test_importing_and_constructing_read_no_environment() -> None:
    code = (
        "import os\n"
        "class Spy(dict):\n"
        "    def __getitem__(self, k):\n"
        "        assert not k.startswith('VIDGATE'), k\n"
        "        return super().__getitem__(k)\n"
        "    def get(self, k, d=None):\n"
        "        assert not k.startswith('VIDGATE'), k\n"
        "        return super().get(k, d)\n"
        "os.environ['VIDGATE_BASE_URL'] = 'http://wrong:1'\n"
        "os.environ = Spy(os.environ)\n"
        "import vidgate\n"
        "c = vidgate.Client('http://right:2')\n"
        "assert c.base_url == 'http://right:2' and c.api_key is None\n"
        "c.close()\n"
        "a = vidgate.AsyncClient('http://right:2')\n"
        "import asyncio; asyncio.run(a.aclose())\n"
        "try:\n"
        "    vidgate.Client.from_env()\n"
        "except AssertionError as e:\n"
        "    print('spied', e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "spied VIDGATE_BASE_URL"  # the spy works


def test_constructor_rejects_client_and_transport_together() -> None:
    import httpx

    with httpx.Client() as http, pytest.raises(ValueError, match="not both"):
        Client(
            "http://h",
            http_client=http,
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        )


def test_submit_call_and_idempotency() -> None:
    base = BaseClient("http://h", "key")
    plain = base._submit_call("testcard-video", "a fox", {"duration": 1}, None)
    assert plain.method == "POST" and plain.url == "http://h/api/generate-video"
    assert plain.json == {"model": "testcard-video", "prompt": "a fox", "duration": 1}
    assert plain.retry is RetryMode.UNSENT_ONLY
    assert "Idempotency-Key" not in plain.headers
    assert plain.headers["Authorization"] == "Bearer key"
    assert plain.headers["x-api-key"] == "key"
    keyed = base._submit_call("m", None, {}, "order-42")
    assert keyed.retry is RetryMode.IDEMPOTENT
    assert keyed.headers["Idempotency-Key"] == "order-42"
    assert keyed.json == {"model": "m"}
    with pytest.raises(ValueError, match="model"):
        base._submit_call("", "p", {}, None)


def test_status_calls_pick_the_route() -> None:
    base = BaseClient("http://h", timeout_s=10)
    legacy = base._status_call("vid_1", "veo2-video")
    assert legacy.url == "http://h/api/generate-video/status"
    assert legacy.params == {"runId": "vid_1", "modelSlug": "veo2-video"}
    assert "Authorization" not in legacy.headers
    unified = base._status_call("vid_1", None, PollStep(wait_seconds=30, timeout_s=40))
    assert unified.url == "http://h/api/video/status"
    assert unified.params == {"runId": "vid_1", "waitSeconds": "30"}
    assert unified.timeout_s == 40
    no_hold = base._status_call("vid_1", None, PollStep(wait_seconds=0, timeout_s=0.3))
    assert "waitSeconds" not in no_hold.params and no_hold.timeout_s == 0.3
    cancel = base._cancel_call("vid_1")
    assert cancel.json == {"runId": "vid_1"} and cancel.retry is RetryMode.IDEMPOTENT
    with pytest.raises(ValueError, match="run_id"):
        base._status_call("", None)


def test_download_sends_the_key_only_to_our_origin() -> None:
    base = BaseClient("https://nano-gpt.com/api", "key")
    assert (
        base._download_headers("https://nano-gpt.com/api/generate-video/content?x=1")[
            "Authorization"
        ]
        == "Bearer key"
    )
    assert "Authorization" not in base._download_headers("https://bucket.r2.dev/v.mp4?sig=1")
    assert "Authorization" not in base._download_headers("http://nano-gpt.com/v.mp4")
    assert "x-api-key" not in base._download_headers("https://nano-gpt.com/v.mp4")


def test_video_url_from_status_or_url() -> None:
    base = BaseClient("https://gw.example")
    assert base._video_url("/files/a.mp4") == "https://gw.example/files/a.mp4"
    done = VideoStatus("vid_1", RunStatus.COMPLETED, video_url="https://cdn/x.mp4")
    assert base._video_url(done) == "https://cdn/x.mp4"
    with pytest.raises(VideoNotReady, match="IN_PROGRESS"):
        base._video_url(VideoStatus("vid_1", RunStatus.IN_PROGRESS, "IN_PROGRESS"))
    with pytest.raises(VideoNotReady, match="no video URL"):
        base._video_url(VideoStatus("vid_1", RunStatus.COMPLETED, "COMPLETED"))
    with pytest.raises(GenerationFailed):
        base._video_url(VideoStatus("vid_1", RunStatus.FAILED, "FAILED", error="x"))
    with pytest.raises(ValueError, match="empty"):
        base._video_url(" ")


def test_run_handles_rebuild_from_an_id() -> None:
    with Client("http://h") as client:
        run = client.run("vid_abc", "testcard-video")
        assert (run.id, run.model, run.submission, run.client) == (
            "vid_abc",
            "testcard-video",
            None,
            client,
        )
        assert repr(run) == "Run(id='vid_abc', model='testcard-video')"
