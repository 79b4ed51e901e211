"""The testcard backend, driving its real renderer subprocess."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from vidgate.backends.base import GenerationCancelled, GenerationFailed, LocalBackend
from vidgate.backends.testcard import (
    TestcardBackend,
    TestcardOptions,
    _run_renderer,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.sandbox import SandboxSwitches, parse_sandbox

TEXT = {"mode": "text"}
IMAGE = {"mode": "image", "allow_private_hosts": True}  # the test server is on loopback


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _request(prompt: str | None = "a cat on a skateboard", **changes: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "model": "testcard-video",
        "prompt": prompt,
        "duration_s": 1.0,
        "resolution": "240p",
        "seed": 1,
    }
    fields.update(changes)
    return GenerationRequest(**fields)


class Progress:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.started = asyncio.Event()

    async def __call__(self, percent: float) -> None:
        self.values.append(percent)
        self.started.set()


def _renderer_children() -> list[int]:
    """Pids of this process's live renderer subprocesses."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if int(ppid) == os.getpid() and state != "Z" and b"testcard_render" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "text", "switches"),
    [
        ("a red car", "a red car", SandboxSwitches()),
        ("a red car sandbox:fail", "a red car", SandboxSwitches(fail=True)),
        ("SANDBOX:NSFW a red car", "a red car", SandboxSwitches(nsfw=True)),
        ("a sandbox:cancel red car", "a red car", SandboxSwitches(cancel=True)),
        ("car sandbox:slow=12", "car", SandboxSwitches(slow_s=12.0)),
        ("car sandbox:slow=2.5s", "car", SandboxSwitches(slow_s=2.5)),
        ("car sandbox:slow=9999", "car", SandboxSwitches(slow_s=600.0)),
        ("car sandbox:queue=3 sandbox:fail", "car", SandboxSwitches(fail=True, queue_s=3.0)),
        ("car sandbox:xyz", "car sandbox:xyz", SandboxSwitches()),
        ("car sandbox:failure", "car sandbox:failure", SandboxSwitches()),
        ("line one sandbox:fail\nline two", "line one\nline two", SandboxSwitches(fail=True)),
        (None, "", SandboxSwitches()),
    ],
)
def test_parse_sandbox(prompt: str | None, text: str, switches: SandboxSwitches) -> None:
    assert parse_sandbox(prompt) == (text, switches)


def test_options_defaults_and_checks() -> None:
    assert TestcardOptions.from_mapping({}) == TestcardOptions()
    assert TestcardOptions.from_mapping({"mode": "image", "fps": 12}).fps == 12
    with pytest.raises(GenerationFailed, match="'mode'"):
        TestcardOptions.from_mapping({"mode": "video"})
    with pytest.raises(GenerationFailed, match="'fps'"):
        TestcardOptions.from_mapping({"fps": "fast"})


def test_backend_fits_the_port() -> None:
    backend: LocalBackend = TestcardBackend()
    assert backend.name == "testcard"


# --- rendering -----------------------------------------------------------------------------


async def test_renders_a_video_with_progress(tmp_path: Path) -> None:
    progress = Progress()
    output = await TestcardBackend().generate(
        _request(duration_s=2.0), TEXT, tmp_path / "run", progress
    )

    assert output.path == tmp_path / "run" / "testcard.mp4"
    assert output.content_type == "video/mp4"
    with av.open(str(output.path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 426, 240)
        assert sum(1 for _ in container.decode(stream)) == 48
    assert progress.values[-1] == 100.0
    assert progress.values == sorted(set(progress.values))
    assert len(progress.values) >= 2
    assert sorted(p.name for p in output.path.parent.iterdir()) == ["testcard.mp4"]
    assert _renderer_children() == []


async def test_cancel_kills_the_renderer_quickly(tmp_path: Path) -> None:
    progress = Progress()
    task = asyncio.create_task(
        TestcardBackend().generate(
            _request("slow one sandbox:slow=5", duration_s=2.0), TEXT, tmp_path, progress
        )
    )
    await asyncio.wait_for(progress.started.wait(), timeout=30)
    children = _renderer_children()
    assert len(children) == 1

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert not _alive(children[0])
    assert list(tmp_path.iterdir()) == []


async def test_slow_switch_paces_rendering(tmp_path: Path) -> None:
    started = time.monotonic()
    await TestcardBackend().generate(_request("sandbox:slow=1"), TEXT, tmp_path, Progress())
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(
    ("switch", "error", "check"),
    [
        (
            "sandbox:fail",
            GenerationFailed,
            {
                "is_nsfw": False,
                "user_friendly": "The video could not be generated. Please try again.",
            },
        ),
        (
            "sandbox:nsfw",
            GenerationFailed,
            {
                "is_nsfw": True,
                "user_friendly": (
                    "Content flagged as inappropriate. Please modify your prompt and try again."
                ),
            },
        ),
        ("sandbox:cancel", GenerationCancelled, {}),
    ],
)
async def test_sandbox_outcomes_come_midway(
    tmp_path: Path, switch: str, error: type[Exception], check: dict[str, Any]
) -> None:
    progress = Progress()
    with pytest.raises(error) as caught:
        await TestcardBackend().generate(
            _request(f"a boat {switch}", duration_s=2.0), TEXT, tmp_path, progress
        )
    for attribute, value in check.items():
        assert getattr(caught.value, attribute) == value
    assert progress.values[-1] == 50.0  # half the frames were rendered first
    assert list(tmp_path.iterdir()) == []


async def test_renderer_errors_become_generation_failed(tmp_path: Path) -> None:
    bad = {"text": "odd", "width": 127, "height": 72, "duration_s": 1}
    with pytest.raises(GenerationFailed, match="ValueError: frame size must be even") as caught:
        await _run_renderer(bad, tmp_path / "bad.mp4", Progress())
    assert caught.value.user_friendly == "The video could not be generated. Please try again."
    assert list(tmp_path.iterdir()) == []


def test_renderer_exits_when_its_parent_dies(tmp_path: Path) -> None:
    spec = {
        "text": "orphan",
        "width": 128,
        "height": 72,
        "duration_s": 2,
        "slow_s": 30,
        "out_path": str(tmp_path / "orphan.mp4"),
    }
    parent_code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-m', 'vidgate.backends.testcard_render'],"
        " stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        f"child.stdin.write({json.dumps(spec).encode()!r}); child.stdin.close()\n"
        "child.stdout.readline()\n"  # the first progress line: rendering is under way
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child_pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert not (tmp_path / "orphan.mp4").exists()


# --- checking the request ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_changes", "options", "message"),
    [
        ({"prompt": None}, TEXT, "needs a prompt"),
        ({"prompt": "  "}, TEXT, "needs a prompt"),
        ({"duration_s": 30.0}, TEXT, "duration must be from 1 to 20 seconds"),
        ({"duration_s": 8.0}, {"mode": "text", "max_duration_s": 6}, "from 1 to 6 seconds"),
        ({"resolution": "4k"}, TEXT, "resolution must look like"),
        ({"resolution": "1440p"}, TEXT, "above the testcard maximum"),
        ({"model": "testcard-image-video"}, IMAGE, "needs an image"),
        ({"image_data_url": "data:image/png;base64,!!!"}, IMAGE, "not hold valid base64"),
        ({"image_data_url": "http://example.com/a.png"}, IMAGE, "must be a data URL"),
        (
            {"image_data_url": "data:image/png;base64," + base64.b64encode(b"nope").decode()},
            IMAGE,
            "could not be decoded",
        ),
        (
            {"image_data_url": "data:image/png;base64," + base64.b64encode(_png()).decode()},
            {"mode": "image", "image_max_bytes": 10},
            "the limit is 10",
        ),
    ],
)
async def test_bad_requests_fail_clearly(
    tmp_path: Path, request_changes: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(GenerationFailed, match=message) as caught:
        await TestcardBackend().generate(_request(**request_changes), options, tmp_path, Progress())
    assert caught.value.user_friendly
    assert _renderer_children() == []


async def test_animates_an_image_data_url(tmp_path: Path) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(_png(90, 160)).decode()
    request = _request(
        "", model="testcard-image-video", image_data_url=data_url, aspect_ratio="auto"
    )
    output = await TestcardBackend().generate(request, IMAGE, tmp_path, Progress())
    with av.open(str(output.path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (240, 426)  # the image's 9:16


# --- fetching imageUrl from a real HTTP server ---------------------------------------------


class _ImageHandler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(0.5)
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"missing"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    _ImageHandler.routes = {
        "/cat.png": (200, "image/png", _png(160, 90)),
        "/big.png": (200, "image/png", _png(800, 800) + b"\0" * 50_000),
        "/page.html": (200, "text/html", b"<html>not an image</html>"),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_fetches_image_url(tmp_path: Path, image_server: str) -> None:
    request = _request(
        "pan over this", model="testcard-image-video", image_url=f"{image_server}/cat.png"
    )
    progress = Progress()
    output = await TestcardBackend().generate(request, IMAGE, tmp_path, progress)
    with av.open(str(output.path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (426, 240)
        assert sum(1 for _ in container.decode(stream)) == 24
    assert progress.values[-1] == 100.0


@pytest.mark.parametrize(
    ("path", "options", "message"),
    [
        ("/missing.png", IMAGE, "could not fetch imageUrl: HTTP 404"),
        ("/big.png", {**IMAGE, "image_max_bytes": 20_000}, "larger than 20000 bytes"),
        ("/page.html", IMAGE, "could not be decoded"),
    ],
)
async def test_image_url_failures(
    tmp_path: Path, image_server: str, path: str, options: dict[str, Any], message: str
) -> None:
    request = _request(model="testcard-image-video", image_url=image_server + path)
    with pytest.raises(GenerationFailed, match=message):
        await TestcardBackend().generate(request, options, tmp_path, Progress())


async def test_image_url_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # bind, note the port, close: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request = _request(model="testcard-image-video", image_url=f"http://127.0.0.1:{port}/a.png")
    with pytest.raises(GenerationFailed, match="could not fetch imageUrl: the connection failed"):
        await TestcardBackend().generate(request, IMAGE, tmp_path, Progress())


async def test_image_url_timeout(tmp_path: Path, image_server: str) -> None:
    request = _request(model="testcard-image-video", image_url=f"{image_server}/slow.png")
    options = {**IMAGE, "image_fetch_timeout_s": 0.2}
    with pytest.raises(GenerationFailed, match=r"no answer within 0\.2 s"):
        await TestcardBackend().generate(request, options, tmp_path, Progress())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a.png",
        "http://localhost/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://[::1]/a.png",
    ],
)
async def test_image_urls_inside_the_network_are_refused_by_default(
    url: str, tmp_path: Path
) -> None:
    request = _request(model="testcard-image-video", image_url=url)
    with pytest.raises(GenerationFailed, match="not a public address"):
        await TestcardBackend().generate(request, {"mode": "image"}, tmp_path, Progress())
