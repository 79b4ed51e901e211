"""The built-in CPU backend: renders a testcard video in a subprocess.

Two models use it: ``mode = "text"`` (``testcard-video``, the prompt over a moving pattern)
and ``mode = "image"`` (``testcard-image-video``, a slow pan and zoom over the input image).
Rendering happens in ``python -m vidgate.backends.testcard_render`` so that cancelling the
awaiting task can stop it at once (SIGKILL) and a crash cannot take the worker down.

Prompts may carry sandbox switches, removed from the rendered text, to exercise clients:
``sandbox:fail``, ``sandbox:nsfw`` and ``sandbox:cancel`` end the run that way half-way
through; ``sandbox:slow=N`` makes rendering take at least N seconds; ``sandbox:queue=N`` is
read by the server (it holds the run in the queue) and ignored here.

The text model ignores any input image; the image model shows the prompt, if any, over it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from vidgate.backends.base import (
    FAILED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationCancelled,
    GenerationFailed,
    LocalOutput,
    ProgressCallback,
)
from vidgate.backends.testcard_render import frame_size
from vidgate.netguard import GuardedTransport, Resolve, UnsafeTarget, system_resolve
from vidgate.runs.catalog import TESTCARD_DEFAULT_DURATION_S, TESTCARD_MAX_DURATION_S
from vidgate.runs.request import GenerationRequest
from vidgate.runs.sandbox import SandboxSwitches, parse_sandbox

IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP")  # MPO: the JPEG flavour many phones write
IMAGE_MAX_PIXELS = 50_000_000
OUTPUT_NAME = "testcard.mp4"
_RENDERER = "vidgate.backends.testcard_render"
_PROGRESS_EVERY_S = 0.25
"""Progress is relayed at most this often per run (each relay is a write and an event)."""
_PROGRESS_MIN_STEP_PERCENT = 1.0
_DATA_URL_RE = re.compile(r"^data:image/[\w.+-]+(?:;[\w.+=-]+)*;base64,(.*)$", re.I | re.S)


@dataclass(frozen=True)
class TestcardOptions:
    """The ``options`` of a testcard model's config, checked."""

    __test__ = False  # not a pytest test class, despite the name

    mode: str = "text"
    fps: int = 24
    max_duration_s: float = float(TESTCARD_MAX_DURATION_S)
    default_duration_s: float = float(TESTCARD_DEFAULT_DURATION_S)
    image_fetch_timeout_s: float = 10.0
    image_max_bytes: int = 4 * 1024 * 1024
    allow_private_hosts: bool = False
    """Let ``imageUrl`` reach loopback and private addresses (tests, trusted networks)."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> TestcardOptions:
        """Raises :class:`GenerationFailed` naming the bad key."""
        mode = options.get("mode", cls.mode)
        if mode not in ("text", "image"):
            raise GenerationFailed(
                f"testcard: option 'mode' must be 'text' or 'image'; got {mode!r}"
            )
        return cls(
            mode=mode,
            fps=int(_number(options, "fps", cls.fps, 1, 60)),
            max_duration_s=_number(options, "max_duration_s", cls.max_duration_s, 1, 600),
            default_duration_s=_number(
                options, "default_duration_s", cls.default_duration_s, 1, 600
            ),
            image_fetch_timeout_s=_number(
                options, "image_fetch_timeout_s", cls.image_fetch_timeout_s, 0.1, 300
            ),
            image_max_bytes=int(
                _number(options, "image_max_bytes", cls.image_max_bytes, 1, 256 * 1024 * 1024)
            ),
            allow_private_hosts=options.get("allow_private_hosts") is True,
        )


def _number(options: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise GenerationFailed(
            f"testcard: option '{key}' must be a number from {low:g} to {high:g}; got {value!r}"
        )
    return float(value)


class TestcardBackend:
    """Renders testcard videos on this machine's CPU (see the module doc).

    ``resolve`` is the DNS resolver for ``imageUrl`` fetches (tests inject one): unless the
    model allows private hosts, the fetch connects only to a public address it resolved.
    """

    __test__ = False  # not a pytest test class, despite the name

    name = "testcard"

    def __init__(self, *, resolve: Resolve = system_resolve) -> None:
        self._resolve = resolve

    async def generate(
        self,
        request: GenerationRequest,
        options: Mapping[str, Any],
        workdir: Path,
        on_progress: ProgressCallback,
    ) -> LocalOutput:
        opts = TestcardOptions.from_mapping(options)
        text, switches = parse_sandbox(request.prompt)
        image: bytes | None = None
        image_size: tuple[int, int] | None = None
        if opts.mode == "text":
            if not (request.prompt or "").strip():
                raise _invalid(f"{request.model} needs a prompt")
        else:
            if not request.has_image:
                raise _invalid(f"{request.model} needs an image (imageUrl or imageDataUrl)")
            image = await self._load_image(request, opts)
            image_size = await asyncio.to_thread(_check_image, image)
        duration = request.duration_s or opts.default_duration_s
        if not 1 <= duration <= opts.max_duration_s:
            raise _invalid(
                f"duration must be from 1 to {opts.max_duration_s:g} seconds for "
                f"{request.model}; got {duration:g}"
            )
        try:
            width, height = frame_size(request.aspect_ratio, request.resolution, image_size)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
        total = max(1, round(duration * opts.fps))
        spec = {
            "text": text,
            "width": width,
            "height": height,
            "duration_s": duration,
            "fps": opts.fps,
            "seed": (request.seed or 0) % 2**32,
            "image": base64.b64encode(image).decode("ascii") if image is not None else None,
            "slow_s": switches.slow_s,
            "stop_after_frames": max(1, total // 2) if switches.stops_midway else None,
        }
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        out_path = workdir / OUTPUT_NAME
        outcome = await _run_renderer(spec, out_path, on_progress)
        if switches.stops_midway:
            _remove_partials(out_path)
            raise _sandbox_outcome(switches)
        if outcome != "done":
            raise GenerationFailed(
                f"testcard renderer ended with {outcome!r}", user_friendly=FAILED_FRIENDLY
            )
        return LocalOutput(out_path, duration_s=total / opts.fps)

    async def _load_image(self, request: GenerationRequest, opts: TestcardOptions) -> bytes:
        if request.image_data_url:
            return _decode_data_url(request.image_data_url, opts.image_max_bytes)
        assert request.image_url is not None
        return await self._fetch_image(request.image_url, opts)

    async def _fetch_image(self, url: str, opts: TestcardOptions) -> bytes:
        if not re.match(r"^https?://", url, re.IGNORECASE):
            raise _invalid("could not fetch imageUrl: only http and https URLs are supported")
        # Checked as it connects, to the address it checked (no second lookup to rebind).
        transport = None if opts.allow_private_hosts else GuardedTransport(resolve=self._resolve)
        limit = opts.image_max_bytes
        too_big = f"could not fetch imageUrl: the image is larger than {limit} bytes"
        timed_out = f"could not fetch imageUrl: no answer within {opts.image_fetch_timeout_s:g} s"
        try:
            async with (
                asyncio.timeout(opts.image_fetch_timeout_s),
                httpx.AsyncClient(
                    transport=transport,
                    timeout=opts.image_fetch_timeout_s,
                    follow_redirects=False,  # a redirect could lead to a private address
                    trust_env=False,
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.is_redirect:
                    raise _invalid(
                        f"could not fetch imageUrl: it redirects (HTTP {response.status_code}); "
                        "send the final URL of the image"
                    )
                if response.status_code != 200:
                    raise _invalid(f"could not fetch imageUrl: HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _invalid(too_big)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise _invalid(too_big)
                return bytes(body)
        except UnsafeTarget as exc:  # said for the person who sent the URL
            raise _invalid(f"could not fetch imageUrl: the URL {exc}") from None
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _invalid(timed_out) from exc
        except httpx.HTTPError as exc:
            raise _invalid("could not fetch imageUrl: the connection failed") from exc


def _invalid(message: str) -> GenerationFailed:
    """A failure caused by the request, worded for the person who sent it."""
    return GenerationFailed(message, user_friendly=message)


def _sandbox_outcome(switches: SandboxSwitches) -> GenerationFailed | GenerationCancelled:
    if switches.nsfw:
        return GenerationFailed(
            "Content policy violation", is_nsfw=True, user_friendly=NSFW_FRIENDLY
        )
    if switches.fail:
        return GenerationFailed(
            "testcard: failure requested by the prompt (sandbox:fail)",
            user_friendly=FAILED_FRIENDLY,
        )
    return GenerationCancelled("testcard: cancellation requested by the prompt (sandbox:cancel)")


def _decode_data_url(data_url: str, max_bytes: int) -> bytes:
    match = _DATA_URL_RE.match(data_url)
    if match is None:
        raise _invalid("imageDataUrl must be a data URL like 'data:image/png;base64,...'")
    try:
        data = base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("imageDataUrl does not hold valid base64 data") from exc
    if len(data) > max_bytes:
        raise _invalid(f"imageDataUrl decodes to {len(data)} bytes; the limit is {max_bytes}")
    return data


def _check_image(data: bytes) -> tuple[int, int]:
    """The displayed ``(width, height)`` of a PNG/JPEG/WebP image, else GenerationFailed."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise _invalid(f"the input image must be PNG, JPEG or WebP; got {image.format}")
            width, height = image.size
            if width * height > IMAGE_MAX_PIXELS:
                raise _invalid(f"the input image is too large ({width}x{height} pixels)")
            image.load()
            rotated = image.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientation
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _invalid(f"the input image could not be decoded: {exc}") from exc
    return (height, width) if rotated else (width, height)


async def _run_renderer(spec: dict[str, Any], out_path: Path, on_progress: ProgressCallback) -> str:
    """Run the renderer subprocess to its end and return ``"done"`` or ``"stopped"``.

    Cancelling the awaiting task kills it (SIGKILL) and removes any partial output.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        _RENDERER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    try:
        try:  # if the renderer dies before reading, its exit code tells why
            proc.stdin.write(json.dumps({**spec, "out_path": str(out_path)}).encode())
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            proc.stdin.close()
        outcome, error = await _follow(proc.stdout, on_progress)
        code = await proc.wait()
        stderr = (await stderr_task).decode(errors="replace").strip()
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        stderr_task.cancel()
        _remove_partials(out_path)
        raise
    if code == 0 and outcome in ("done", "stopped"):
        return outcome
    _remove_partials(out_path)
    detail = error or (stderr.splitlines()[-1] if stderr else f"exit code {code}")
    raise GenerationFailed(f"testcard renderer failed: {detail}", user_friendly=FAILED_FRIENDLY)


async def _follow(
    stdout: asyncio.StreamReader, on_progress: ProgressCallback
) -> tuple[str | None, str | None]:
    """Relay ``progress`` lines (at most every 0.25 s, in steps of 1% or more); return the
    final word and any error text.

    The latest progress is always relayed before ``done`` or ``stopped``.
    """
    last_percent, last_at, latest = 0.0, time.monotonic(), 0.0
    outcome: str | None = None
    error: str | None = None
    async for raw in stdout:
        word, _, rest = raw.decode(errors="replace").strip().partition(" ")
        numbers = rest.split()
        if word == "progress" and len(numbers) == 2 and all(n.isdigit() for n in numbers):
            done, total = int(numbers[0]), int(numbers[1])
            latest = min(100.0, 100.0 * done / max(1, total))
            now = time.monotonic()
            due = now - last_at >= _PROGRESS_EVERY_S
            if latest - last_percent >= _PROGRESS_MIN_STEP_PERCENT and due:
                last_percent, last_at = latest, now
                await on_progress(latest)
        elif word in ("done", "stopped"):
            outcome = word
            if latest > last_percent:
                last_percent = latest
                await on_progress(latest)
        elif word == "error":
            outcome, error = word, rest
    return outcome, error


def _remove_partials(out_path: Path) -> None:
    for path in [out_path, *out_path.parent.glob(f".{out_path.name}.*.tmp")]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
