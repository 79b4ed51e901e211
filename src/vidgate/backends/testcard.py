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
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgate.backends.base import (
    FAILED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationCancelled,
    GenerationFailed,
    LocalOutput,
    ProgressCallback,
)
from vidgate.backends.input_image import ImageLimits, check_image, invalid, load_image
from vidgate.backends.testcard_render import frame_size
from vidgate.netguard import Resolve, system_resolve
from vidgate.runs.catalog import TESTCARD_DEFAULT_DURATION_S, TESTCARD_MAX_DURATION_S
from vidgate.runs.request import GenerationRequest
from vidgate.runs.sandbox import SandboxSwitches, parse_sandbox

OUTPUT_NAME = "testcard.mp4"
_RENDERER = "vidgate.backends.testcard_render"
_PROGRESS_EVERY_S = 0.25
"""Progress is relayed at most this often per run (each relay is a write and an event)."""
_PROGRESS_MIN_STEP_PERCENT = 1.0


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
    max_active: int | None = None

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
                raise invalid(f"{request.model} needs a prompt")
        else:
            if not request.has_image:
                raise invalid(f"{request.model} needs an image (imageUrl or imageDataUrl)")
            limits = ImageLimits(
                opts.image_fetch_timeout_s, opts.image_max_bytes, opts.allow_private_hosts
            )
            image = await load_image(request, limits, self._resolve)
            image_size = await asyncio.to_thread(check_image, image)
        duration = request.duration_s or opts.default_duration_s
        if not 1 <= duration <= opts.max_duration_s:
            raise invalid(
                f"duration must be from 1 to {opts.max_duration_s:g} seconds for "
                f"{request.model}; got {duration:g}"
            )
        try:
            width, height = frame_size(request.aspect_ratio, request.resolution, image_size)
        except ValueError as exc:
            raise invalid(str(exc)) from exc
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
