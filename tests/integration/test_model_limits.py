"""Per-model limits on a real ``vidgate serve``: a value the provider would refuse is a 400
before any provider call (the Veo emulator counts every request it gets), the catalog shows
the same lists, and a snapping model runs, prices and reports the value it used."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_helpers import (
    assert_submit_error,
    decode_mp4,
    submit,
    unified,
    wait_terminal,
)
from tests.emulators.harness import LoopbackServer
from tests.emulators.veo import VeoEmulator
from tests.providers import VEO_KEY
from tests.servers import TEST_CONFIG, LiveServer, running_server

CONFIG = (
    TEST_CONFIG
    + """
[providers.veo]
base_url = "{veo}"
api_key_env = "VIDGATE_TEST_VEO_KEY"
poll_interval_s = 0.1

[models."veo3-video"]
backend = "veo"
provider_model = "veo-3.0-generate-001"
durations = [4, 6, 8]
aspect_ratios = ["16:9", "9:16"]

[models."testcard-snap"]
backend = "testcard"
durations = [1, 2]
resolutions = ["240p"]
snap_to_allowed = true
price_per_second_usd = 0.1
"""
)


@pytest.fixture(scope="module")
def veo() -> Iterator[tuple[VeoEmulator, str]]:
    emulator = VeoEmulator(api_key=VEO_KEY, queue_s=0.05, run_s=0.1)
    with LoopbackServer(emulator.app) as server:
        yield emulator, server.base_url


@pytest.fixture(scope="module")
def server(
    veo: tuple[VeoEmulator, str],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[LiveServer]:
    monkeypatch_module.setenv("VIDGATE_TEST_VEO_KEY", VEO_KEY)
    data = Path(tmp_path_factory.mktemp("limits")) / "data"
    with running_server(data, CONFIG.replace("{veo}", veo[1])) as live:
        yield live


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_an_unsupported_veo_duration_is_refused_before_the_provider(
    server: LiveServer, veo: tuple[VeoEmulator, str]
) -> None:
    emulator = veo[0]
    emulator.reset()
    body = {"model": "veo3-video", "prompt": "a lighthouse", "duration": "5s"}
    message = assert_submit_error(submit(server, body), 400, "invalid_request_error")
    assert "'duration' must be one of 4, 6, 8 seconds for 'veo3-video'; got 5" in message
    refused = submit(server, {**body, "duration": 6, "aspect_ratio": "1:1"})
    assert "one of 16:9, 9:16" in assert_submit_error(refused, 400, "invalid_request_error")
    time.sleep(0.5)  # a worker would have submitted by now
    assert emulator.submits == 0 and sum(emulator.requests.values()) == 0
    # The same model with an allowed duration reaches the emulator: the count can move.
    accepted = submit(server, {**body, "duration": 6})
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 20
    while emulator.submits == 0:
        assert time.monotonic() < deadline, "the allowed submit never reached the provider"
        time.sleep(0.05)
    assert emulator.submit_bodies[0]["parameters"]["durationSeconds"] == 6


def test_the_catalog_shows_the_limits(server: LiveServer) -> None:
    models = httpx.get(f"{server.base_url}/api/v1/video-models").json()["data"]
    veo3 = next(m for m in models if m["id"] == "veo3-video")["supported_parameters"]
    assert veo3["durations"] == [4, 6, 8] and veo3["aspect_ratios"] == ["16:9", "9:16"]
    assert veo3["parameters"]["duration"]["options"] == [4, 6, 8]
    assert veo3["defaults"]["duration"] in (4, 6, 8)
    snap = next(m for m in models if m["id"] == "testcard-snap")
    assert snap["supported_parameters"]["resolutions"] == ["240p"]
    assert snap["pricing"] == {
        "currency": "USD",
        "per_video": {"240p": 0.0},
        "per_second": {"240p": 0.1},
    }


def test_a_snapping_model_runs_prices_and_reports_the_used_values(server: LiveServer) -> None:
    body = {"model": "testcard-snap", "prompt": "snap", "duration": 1.5, "resolution": "360p"}
    response = submit(server, body)
    assert response.status_code == 202, response.text
    assert response.json()["cost"] == pytest.approx(0.2)  # 2 s (the tie goes up) x 0.1
    run_id = response.json()["runId"]
    legacy = wait_terminal(server, run_id, model="testcard-snap")
    adjusted = {
        "duration": {"requested": 1.5, "used": 2},
        "resolution": {"requested": "360p", "used": "240p"},
    }
    assert legacy["status"] == "COMPLETED" and legacy["adjusted"] == adjusted
    assert unified(server, run_id)["data"]["adjusted"] == adjusted
    assert legacy["cost"] == pytest.approx(0.2)
    video = decode_mp4(httpx.get(legacy["output"]["video"]["url"], timeout=10).content)
    assert video.height == 240 and video.duration_s == pytest.approx(2, abs=0.2)
