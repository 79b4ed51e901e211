"""The testcard renderer: a pure, synchronous H.264 writer for the built-in CPU backend.

It draws a moving colour pattern (or slowly pans and zooms over a given image) with the
prompt, a frame counter and a timestamp on top, and encodes it with PyAV's bundled libx264.
The output is byte-identical for the same :class:`TestcardSpec`: one encoder thread without
lookahead, bitexact flags and no wall-clock metadata.

Run as ``python -m vidgate.backends.testcard_render`` it is the subprocess the
:mod:`vidgate.backends.testcard` backend drives: one JSON object on stdin, then
``progress <done> <total>`` lines, and finally ``done``, ``stopped`` or ``error <message>``
on stdout.
"""

from __future__ import annotations

import base64
import colorsys
import contextlib
import io
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont, ImageOps

from vidgate.backends.base import BackendError
from vidgate.backends.mp4 import Mp4Writer, Pixels

MAX_SHORT_SIDE = 1080
MAX_LONG_SIDE = 2520  # 21:9 at 1080p
MIN_SIDE = 64
DEFAULT_RESOLUTION = "480p"
ASPECTS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "21:9": (21, 9),
}
_SHORT_SIDE_RE = re.compile(r"^(\d{2,5})p$")
_EXPLICIT_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress lines a second
_ZOOM = 0.15  # Ken Burns: how far the view zooms over the clip
_MARGIN_ZOOM = 1.0 + _ZOOM + 0.1  # how much larger than the frame the fitted image is kept


class RenderStopped(BackendError):
    """Rendering was stopped before the last frame."""

    def __init__(self, frames_done: int, total_frames: int) -> None:
        super().__init__(f"rendering stopped after {frames_done} of {total_frames} frames")
        self.frames_done = frames_done
        self.total_frames = total_frames


@dataclass(frozen=True)
class TestcardSpec:
    """What to render. ``image`` is an encoded PNG/JPEG/WebP to animate instead of the pattern.

    ``slow_s`` paces rendering so it takes at least that many wall seconds;
    ``stop_after_frames`` ends it with :class:`RenderStopped` once that many frames are done.
    """

    __test__ = False  # not a pytest test class, despite the name

    text: str
    width: int
    height: int
    duration_s: float
    fps: int = 24
    seed: int = 0
    image: bytes | None = None
    slow_s: float = 0.0
    stop_after_frames: int | None = None

    @property
    def total_frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def frame_size(
    aspect_ratio: str | None,
    resolution: str | None,
    image_size: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The ``(width, height)`` to render, both even; raises :class:`ValueError` if unsupported.

    ``resolution`` is ``"<short side>p"`` (``"240p"`` to ``"1080p"``, default ``"480p"``) or an
    explicit ``"WxH"`` (which ignores ``aspect_ratio``). ``aspect_ratio`` ``"auto"`` or ``None``
    follows the image when one is given (clamped to 21:9 either way), else it is 16:9.
    """
    res = (resolution or DEFAULT_RESOLUTION).strip().lower()
    if m := _EXPLICIT_RE.match(res):
        width, height = _even(int(m.group(1))), _even(int(m.group(2)))
    elif m := _SHORT_SIDE_RE.match(res):
        short = _even(int(m.group(1)))
        if short > MAX_SHORT_SIDE:
            raise ValueError(f"resolution {resolution} is above the testcard maximum of 1080p")
        ratio = _aspect(aspect_ratio, image_size)
        if ratio >= 1:
            width, height = _even(short * ratio), short
        else:
            width, height = short, _even(short / ratio)
    else:
        raise ValueError(
            f"resolution must look like 480p (240p to 1080p) or 854x480; got {resolution!r:.40}"
        )
    short_side, long_side = min(width, height), max(width, height)
    if short_side > MAX_SHORT_SIDE or long_side > MAX_LONG_SIDE:
        raise ValueError(
            f"{width}x{height} is above the testcard maximum of 1080p "
            f"(short side {MAX_SHORT_SIDE}, long side {MAX_LONG_SIDE})"
        )
    if short_side < MIN_SIDE:
        raise ValueError(f"{width}x{height} is too small; each side must be at least {MIN_SIDE}")
    return width, height


def _aspect(aspect_ratio: str | None, image_size: tuple[int, int] | None) -> float:
    if aspect_ratio in (None, "auto"):
        if image_size is None or min(image_size) <= 0:
            return 16 / 9
        widest = 21 / 9
        return min(max(image_size[0] / image_size[1], 1 / widest), widest)
    if aspect_ratio not in ASPECTS:
        raise ValueError(
            f"aspect ratio must be one of {', '.join([*ASPECTS, 'auto'])}; got {aspect_ratio!r:.20}"
        )
    w, h = ASPECTS[aspect_ratio]
    return w / h


# --- drawing -----------------------------------------------------------------------------


def _palette(seed: int, count: int = 8) -> Pixels:
    rng = random.Random(seed)
    start = rng.random()
    colours = []
    for k in range(count):
        hue = (start + k / count) % 1.0
        sat = 0.55 + 0.4 * rng.random()
        val = 0.7 + 0.3 * rng.random()
        colours.append([round(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val)])
    order = list(range(count))
    rng.shuffle(order)
    return np.array([colours[k] for k in order], dtype=np.uint8)


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # pragma: no cover - build-dependent
        raise RuntimeError("the testcard needs Pillow built with FreeType")
    return font


def _pieces(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """``word``, broken into chunks that each fit ``max_width``."""
    pieces: list[str] = []
    while len(word) > 1 and font.getlength(word) > max_width:
        cut = len(word) - 1
        while cut > 1 and font.getlength(word[:cut]) > max_width:
            cut -= 1
        pieces.append(word[:cut])
        word = word[cut:]
    return [*pieces, word]


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; the last allowed line ends in ``...`` if the text does not fit."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            for piece in _pieces(word, font, max_width):
                candidate = f"{line} {piece}" if line else piece
                if line and font.getlength(candidate) > max_width:
                    lines.append(line)
                    line = piece
                else:
                    line = candidate
        if line:
            lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "...") > max_width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "..."]
    return lines


@dataclass(frozen=True)
class _Overlay:
    """A pre-rendered translucent panel, blended onto every frame at ``(x, y)``."""

    x: int
    y: int
    premultiplied: npt.NDArray[np.uint16]
    inverse_alpha: npt.NDArray[np.uint16]

    def blend(self, frame: Pixels) -> None:
        h, w = self.inverse_alpha.shape[:2]
        region = frame[self.y : self.y + h, self.x : self.x + w]
        mixed = region.astype(np.uint16) * self.inverse_alpha + self.premultiplied
        region[...] = (mixed + 127) // 255


def _text_panel(spec: TestcardSpec, at_bottom: bool) -> _Overlay:
    w, h = spec.width, spec.height
    body_font = _font(max(10, h // 20))
    head_font = _font(max(8, h // 36))
    pad = max(4, h // 40)
    max_text_w = w - 2 * pad - 2 * max(4, w // 20)
    header = f"vidgate testcard | seed {spec.seed} | {w}x{h} | {spec.fps} fps"
    lines = _wrap(spec.text, body_font, max_text_w, max_lines=max(1, (h // 2) // (h // 16 + 1)))
    body_step = round(body_font.size * 1.25)
    head_step = round(head_font.size * 1.5)
    text_w = max([head_font.getlength(header), *(body_font.getlength(s) for s in lines)])
    panel_w = min(w, math.ceil(text_w) + 2 * pad)
    panel_h = min(h, head_step + body_step * len(lines) + 2 * pad)
    image = Image.new("RGBA", (panel_w, panel_h), (0, 0, 0, 150))
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), header, font=head_font, fill=(210, 210, 210, 255))
    for k, line in enumerate(lines):
        draw.text((pad, pad + head_step + k * body_step), line, font=body_font, fill="white")
    rgba = np.asarray(image).astype(np.uint16)
    alpha = rgba[:, :, 3:4]
    x = (w - panel_w) // 2
    y = h - panel_h - 3 * max(10, h // 30) if at_bottom else (h * 2 // 3 - panel_h) // 2
    return _Overlay(max(0, x), max(0, y), rgba[:, :, :3] * alpha, 255 - alpha)


class _Counter:
    """The ``frame N/M  mm:ss.mmm`` box in the bottom-left corner."""

    def __init__(self, spec: TestcardSpec) -> None:
        self.total = spec.total_frames
        self.fps = spec.fps
        self.font = _font(max(8, spec.height // 30))
        self.pad = max(2, spec.height // 120)
        widest = self._label(self.total - 1).replace("1", "0")
        right, bottom = self.font.getbbox(widest)[2:]
        margin = max(4, spec.height // 40)
        self.size = (
            min(spec.width, math.ceil(right) + 2 * self.pad + 4),
            min(spec.height, math.ceil(bottom) + 2 * self.pad),
        )
        self.x = max(0, min(margin, spec.width - self.size[0]))
        self.y = max(0, spec.height - self.size[1] - margin)

    def _label(self, index: int) -> str:
        ms = round(index * 1000 / self.fps)
        return f"frame {index + 1}/{self.total}   {ms // 60000:02d}:{ms % 60000 / 1000:06.3f}"

    def draw(self, frame: Pixels, index: int) -> None:
        image = Image.new("RGB", self.size, (12, 12, 12))
        ImageDraw.Draw(image).text(
            (self.pad, self.pad), self._label(index), font=self.font, fill=(255, 255, 255)
        )
        w, h = self.size
        frame[self.y : self.y + h, self.x : self.x + w] = np.asarray(image)


class _Pattern:
    """Scrolling colour bars, a moving checker strip and a travelling gradient."""

    def __init__(self, spec: TestcardSpec) -> None:
        self.w, self.h, self.fps = spec.width, spec.height, spec.fps
        self.palette = _palette(spec.seed)
        self.accent = self.palette[0].astype(np.float32)
        self.xs = np.arange(self.w)
        self.bars_h = self.h * 2 // 3
        self.strip_h = max(2, self.h // 12)
        self.frame: Pixels = np.empty((self.h, self.w, 3), dtype=np.uint8)

    def draw(self, index: int) -> Pixels:
        t = index / self.fps
        w, n = self.w, len(self.palette)
        shift = int(t * w / 4) % w
        bars = self.palette[((self.xs + shift) % w) * n // w]
        square = max(2, self.strip_h)
        checker = ((self.xs - int(t * w / 3)) // square) % 2 * 235 + 10
        ramp = (self.xs / w + t * 0.2) % 1.0
        gradient = (ramp[:, None] * self.accent).astype(np.uint8)
        self.frame[: self.bars_h] = bars
        self.frame[self.bars_h : self.bars_h + self.strip_h] = checker[:, None].astype(np.uint8)
        self.frame[self.bars_h + self.strip_h :] = gradient
        return self.frame


class _KenBurns:
    """A slow zoom and pan over the image, fitted to cover the frame."""

    def __init__(self, spec: TestcardSpec, data: bytes) -> None:
        self.w, self.h = spec.width, spec.height
        self.last = max(1, spec.total_frames - 1)
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        big = (round(self.w * _MARGIN_ZOOM), round(self.h * _MARGIN_ZOOM))
        self.image = ImageOps.fit(image, big, Image.Resampling.BILINEAR)
        rng = random.Random(spec.seed)
        self.zoom_in = rng.random() < 0.5
        self.start = (rng.random(), rng.random())
        self.end = (rng.random(), rng.random())

    def draw(self, index: int) -> Pixels:
        p = index / self.last
        p = p * p * (3 - 2 * p)  # ease in and out
        zoom = 1 + _ZOOM * (p if self.zoom_in else 1 - p)
        bw, bh = self.image.width / (_MARGIN_ZOOM * zoom), self.image.height / (_MARGIN_ZOOM * zoom)
        fx = self.start[0] + (self.end[0] - self.start[0]) * p
        fy = self.start[1] + (self.end[1] - self.start[1]) * p
        x0, y0 = (self.image.width - bw) * fx, (self.image.height - bh) * fy
        view = self.image.resize(
            (self.w, self.h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh)
        )
        return np.array(view, dtype=np.uint8)


# --- encoding ----------------------------------------------------------------------------


def _pace(
    spec: TestcardSpec, started: float, frames_done: int, should_stop: Callable[[], bool]
) -> None:
    """Sleep until ``frames_done`` frames' share of ``slow_s`` has passed, still stoppable."""
    due = started + spec.slow_s * frames_done / spec.total_frames
    while (left := due - time.monotonic()) > 0:
        if should_stop():
            raise RenderStopped(frames_done, spec.total_frames)
        time.sleep(min(left, 0.05))


def render(
    spec: TestcardSpec,
    out_path: Path,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Write ``spec`` as an H.264 MP4 at ``out_path`` (atomically, via a temp file next to it).

    Raises :class:`RenderStopped` when ``should_stop()`` turns true or ``stop_after_frames``
    is reached; the partial file is removed.
    """
    short_side, long_side = sorted((spec.width, spec.height))
    if spec.width % 2 or spec.height % 2 or short_side < 2:
        raise ValueError(f"frame size must be even, got {spec.width}x{spec.height}")
    if short_side > MAX_SHORT_SIDE or long_side > MAX_LONG_SIDE:
        raise ValueError(f"{spec.width}x{spec.height} is above the testcard maximum of 1080p")
    if spec.fps < 1 or spec.duration_s <= 0:
        raise ValueError("fps and duration_s must be positive")
    stop = should_stop or (lambda: False)
    total = spec.total_frames
    source: _Pattern | _KenBurns = (
        _KenBurns(spec, spec.image) if spec.image is not None else _Pattern(spec)
    )
    panel = _text_panel(spec, at_bottom=spec.image is not None)
    counter = _Counter(spec)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    try:
        with Mp4Writer(tmp, spec.width, spec.height, spec.fps) as writer:
            for index in range(total):
                if stop() or index == spec.stop_after_frames:
                    raise RenderStopped(index, total)
                frame = source.draw(index)
                panel.blend(frame)
                counter.draw(frame, index)
                writer.write(frame)
                if spec.slow_s > 0:
                    _pace(spec, started, index + 1, stop)
                if on_progress is not None:
                    on_progress(index + 1, total)
        os.replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --- subprocess entry point --------------------------------------------------------------


def spec_from_json(data: dict[str, Any]) -> tuple[TestcardSpec, Path]:
    """The spec and output path from the JSON object the backend sends on stdin."""
    image = data.get("image")
    stop_after = data.get("stop_after_frames")
    spec = TestcardSpec(
        text=str(data.get("text") or ""),
        width=int(data["width"]),
        height=int(data["height"]),
        duration_s=float(data["duration_s"]),
        fps=int(data.get("fps", 24)),
        seed=int(data.get("seed", 0)),
        image=base64.b64decode(image, validate=True) if image else None,
        slow_s=float(data.get("slow_s", 0.0)),
        stop_after_frames=None if stop_after is None else int(stop_after),
    )
    return spec, Path(str(data["out_path"]))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


RENDER_NICENESS = 10


def main() -> None:
    """Read one JSON spec on stdin, render it, and report on stdout (see the module doc)."""
    # Rendering is batch work: on a shared machine the API and the worker's event loops,
    # whose latency clients feel, go first.
    os.nice(RENDER_NICENESS)
    parent = os.getppid()
    last_report = 0.0

    def orphaned() -> bool:
        return os.getppid() != parent

    def report(done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if done == total or now - last_report >= _PROGRESS_INTERVAL_S:
            last_report = now
            _say(f"progress {done} {total}")

    try:
        spec, out_path = spec_from_json(json.loads(sys.stdin.read()))
        render(spec, out_path, on_progress=report, should_stop=orphaned)
        _say("done")
    except RenderStopped as stopped:
        if orphaned():
            os._exit(1)
        with contextlib.suppress(BrokenPipeError):
            _say(f"progress {stopped.frames_done} {stopped.total_frames}")
            _say("stopped")
    except BrokenPipeError:
        os._exit(1)  # the parent stopped listening
    except Exception as exc:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:1000]
        with contextlib.suppress(BrokenPipeError):
            _say(f"error {message}")
        sys.exit(1)


if __name__ == "__main__":
    main()
