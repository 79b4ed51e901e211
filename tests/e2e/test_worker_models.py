"""``vidgate worker --models a,b`` takes only those models' runs from the shared queue (GPU
workers take the open models, CPU workers the rest). A slug that is not a model is refused at
start: ``tests/unit/test_config.py``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.api_helpers import status, submit_ok, wait_terminal
from tests.servers import VIDGATE, LiveServer, spawn


def _worker(server: LiveServer, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return spawn(
            [
                *VIDGATE,
                "worker",
                "--data-dir",
                str(server.data_dir),
                "--config",
                str(server.config),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server.env,
        )


def test_a_worker_takes_only_its_models(tmp_path: Path, png_data_url: str) -> None:
    server = LiveServer(tmp_path / "data", extra_args=["--no-worker"])
    server.api_key = server.create_key("test")
    server.start()
    log = tmp_path / "worker.log"
    worker = _worker(server, log, "--models", "testcard-image-video")
    try:
        other = submit_ok(server, "not this worker's")  # testcard-video, the older run
        image = submit_ok(server, model="testcard-image-video", imageDataUrl=png_data_url)
        assert wait_terminal(server, image, model="testcard-image-video")["status"] == "COMPLETED"
        time.sleep(0.6)  # the worker looks at the queue again after each run, and every 0.25 s
        assert status(server, other)["status"] == "IN_QUEUE"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()
    assert f"run_id={other}" not in log.read_text()
