"""The diffusers backend end to end, on the CPU: tiny LTX-Video pipelines built in the test
(no download), served under model slugs by a real ``vidgate serve``, driven over HTTP; every
video checked by decoding it.

One server serves them all (its worker loads each pipeline once and keeps it): text-to-video,
image-to-video, a slow variant to cancel mid-denoise, one that runs out of memory at step 2
(simulated), one whose folder is missing and one whose folder holds a broken model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import decode_mp4, status, submit, wait_for, wait_terminal
from tests.diffusers_tiny import TINY_OPTIONS, build_tiny_ltx
from tests.servers import TEST_CONFIG, LiveServer

SLOW_STEPS = 400


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


def _model(slug: str, options: dict[str, Any], **section: Any) -> str:
    lines = [f"[models.{slug}]", 'backend = "diffusers"']
    lines += [f"{key} = {_toml(value)}" for key, value in section.items()]
    lines.append(f"options = {_toml(options)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("diffusers")
    model = build_tiny_ltx(root / "tiny-ltx")
    broken = root / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "LTXPipeline"}')
    tiny = {**TINY_OPTIONS, "model_path": model}
    config = TEST_CONFIG + "".join(
        [
            _model("tiny-t2v", {**tiny, "pipeline": "auto"}),
            _model(
                "tiny-i2v",
                {**tiny, "pipeline": "LTXImageToVideoPipeline", "mode": "image"},
                text_to_video=False,
                image_to_video=True,
            ),
            _model("tiny-slow", {**tiny, "pipeline": "LTXPipeline", "steps": SLOW_STEPS}),
            _model("tiny-oom", {**tiny, "pipeline": "LTXPipeline", "simulate_oom_at_step": 2}),
            _model("tiny-missing", {**tiny, "model_path": root / "not-there"}),
            _model("tiny-broken", {**tiny, "model_path": broken}),
        ]
    )
    server = LiveServer(root / "data", config)
    server.api_key = server.create_key("test")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run(server: LiveServer, model: str, **body: Any) -> dict[str, Any]:
    response = submit(server, {"model": model, "prompt": "a red test card", **body})
    assert response.status_code == 202, response.text
    return wait_terminal(server, response.json()["runId"], timeout=90, model=model)


def _video(final: dict[str, Any]) -> Any:
    assert final["status"] == "COMPLETED", final
    return decode_mp4(httpx.get(final["output"]["video"]["url"], timeout=30).content)


def test_text_to_video_makes_the_frames_and_size_asked_for(gpu_server: LiveServer) -> None:
    wide = _video(_run(gpu_server, "tiny-t2v", duration=1, resolution="240p", seed=7))
    assert (wide.codec, wide.width, wide.height, wide.frames) == ("h264", 64, 32, 9)
    # 2 s at 8 fps: 16 frames, as 4k + 1 for the VAE: 17; portrait swaps the sides.
    tall = _video(_run(gpu_server, "tiny-t2v", duration=2, aspect_ratio="9:16"))
    assert (tall.width, tall.height, tall.frames) == (32, 64, 17)
    # The model ran where it was configured to (cuda:0 when the tests are run on a GPU).
    loaded = [_event(line) for line in gpu_server.log().splitlines() if "model.loaded" in line]
    wanted = TINY_OPTIONS["device"]
    devices = {e.get("device") for e in loaded if e.get("model") == "tiny-t2v"}
    assert devices == {"cuda:0" if wanted == "cuda" else wanted}


def _event(line: str) -> dict[str, Any]:
    try:
        found = json.loads(line)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def test_image_to_video_animates_the_image(gpu_server: LiveServer, png_data_url: str) -> None:
    final = _run(gpu_server, "tiny-i2v", duration=1, imageDataUrl=png_data_url)
    video = _video(final)  # the 96x64 image is landscape: 16:9
    assert (video.width, video.height, video.frames) == (64, 32, 9)
    refused = _run(gpu_server, "tiny-i2v", duration=1, imageDataUrl="data:image/png;base64,AAAA")
    assert refused["status"] == "FAILED"
    assert "could not be decoded" in refused["error"], refused


def test_cancel_mid_denoise_stops_within_a_step_and_the_next_run_works(
    gpu_server: LiveServer,
) -> None:
    response = submit(gpu_server, {"model": "tiny-slow", "prompt": "a test card", "duration": 1})
    run_id = response.json()["runId"]
    # Progress comes from the pipeline's step callback.
    running = wait_for(gpu_server, run_id, {"IN_PROGRESS"}, timeout=60, model="tiny-slow")
    deadline = time.monotonic() + 60
    while not (running.get("progress") or 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        running = status(gpu_server, run_id, model="tiny-slow")
    assert 0 < running["progress"] < 90, running
    # One diffusers run at a time, though the worker's concurrency is 2: the next waits.
    waiting = submit(gpu_server, {"model": "tiny-t2v", "prompt": "next", "duration": 1})
    time.sleep(0.5)
    assert status(gpu_server, waiting.json()["runId"], model="tiny-t2v")["status"] == "IN_QUEUE"
    cancelled = httpx.post(
        f"{gpu_server.base_url}/api/generate-video/cancel",
        json={"runId": run_id},
        headers=gpu_server.headers(),
        timeout=30,
    )
    assert cancelled.json()["data"]["status"] == "CANCELED", cancelled.text  # unified body
    deadline = time.monotonic() + 30
    while "diffusers.stopped" not in gpu_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = re.search(r"diffusers\.stopped .*stopped after step (\d+) of (\d+)", gpu_server.log())
    assert stopped is not None, gpu_server.log()[-3000:]
    assert int(stopped.group(1)) < SLOW_STEPS and int(stopped.group(2)) == SLOW_STEPS
    assert status(gpu_server, run_id, model="tiny-slow")["status"] == "CANCELLED"
    following = wait_terminal(gpu_server, waiting.json()["runId"], timeout=60, model="tiny-t2v")
    assert _video(following).frames == 9


def test_a_simulated_out_of_memory_fails_the_run_and_the_worker_goes_on(
    gpu_server: LiveServer,
) -> None:
    final = _run(gpu_server, "tiny-oom", duration=1)
    assert final["status"] == "FAILED", final
    assert "out of memory" in final["error"] and "lower resolution" in final["error"], final
    assert "memory" in final["userFriendlyError"], final
    assert _video(_run(gpu_server, "tiny-t2v", duration=1)).frames == 9


def test_missing_or_broken_models_fail_clearly_and_others_work(gpu_server: LiveServer) -> None:
    # Found when the worker started, before any run.
    assert re.search(r"model\.unavailable .*model=tiny-missing", gpu_server.log())
    missing = _run(gpu_server, "tiny-missing", duration=1)
    assert missing["status"] == "FAILED", missing
    assert "unavailable on this worker" in missing["error"], missing
    assert "not-there is not a folder" in missing["error"], missing
    broken = _run(gpu_server, "tiny-broken", duration=1)
    assert broken["status"] == "FAILED", broken
    assert "could not be loaded from" in broken["error"], broken
    testcard = _run(gpu_server, "testcard-video", duration=1, resolution="240p")
    assert _video(testcard).frames == 24
    assert _video(_run(gpu_server, "tiny-t2v", duration=1)).frames == 9


def test_serving_diffusers_models_imports_no_torch_until_a_run(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[models.wan]\nbackend = "diffusers"\noptions = {model_path = "/nowhere"}\n')
    script = (
        "import sys\n"
        "from vidgate.config import load_settings\n"
        "from vidgate.services import build_catalog\n"
        "from vidgate.backends.registry import local_backends\n"
        "import vidgate.worker.runtime\n"
        "from pathlib import Path\n"
        f"catalog = build_catalog(load_settings(config_file=Path({str(config)!r}), env={{}}))\n"
        "backends = local_backends(catalog)\n"
        "assert sorted(backends) == ['diffusers', 'testcard'], backends\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # The missing folder is said at once (logging's last resort prints it here).
    assert "model.unavailable model=wan error='model_path /nowhere is not a folder'" in (
        result.stderr
    )
