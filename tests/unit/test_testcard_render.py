"""The testcard renderer: frame sizes, real H.264 output, determinism, stopping."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFont

from vidgate.backends.testcard_render import (
    RenderStopped,
    TestcardSpec,
    _wrap,
    frame_size,
    render,
    spec_from_json,
)


@pytest.mark.parametrize(
    ("aspect", "resolution", "image_size", "expected"),
    [
        (None, None, None, (854, 480)),
        ("16:9", "240p", None, (426, 240)),
        ("16:9", "360p", None, (640, 360)),
        ("16:9", "540p", None, (960, 540)),
        ("16:9", "720p", None, (1280, 720)),
        ("16:9", "1080p", None, (1920, 1080)),
        ("9:16", "1080p", None, (1080, 1920)),
        ("1:1", "480p", None, (480, 480)),
        ("4:3", "480p", None, (640, 480)),
        ("3:4", "480p", None, (480, 640)),
        ("21:9", "1080p", None, (2520, 1080)),
        ("auto", "480p", None, (854, 480)),
        ("auto", "480p", (1000, 1000), (480, 480)),
        (None, "480p", (600, 800), (480, 640)),
        ("auto", "240p", (10000, 100), (560, 240)),  # clamped to 21:9
        ("16:9", "720P", None, (1280, 720)),
        ("1:1", "1280x720", None, (1280, 720)),  # explicit size wins
        (None, "853x481", None, (852, 480)),  # rounded to even
    ],
)
def test_frame_size(
    aspect: str | None,
    resolution: str | None,
    image_size: tuple[int, int] | None,
    expected: tuple[int, int],
) -> None:
    assert frame_size(aspect, resolution, image_size) == expected


@pytest.mark.parametrize(
    ("aspect", "resolution", "message"),
    [
        ("16:9", "1440p", "above the testcard maximum"),
        ("16:9", "4k", "resolution must look like"),
        (None, "2560x1440", "above the testcard maximum"),
        (None, "2600x1000", "above the testcard maximum"),
        (None, "32x32", "too small"),
        ("5:4", "480p", "aspect ratio must be one of"),
        (None, "big", "resolution must look like"),
    ],
)
def test_frame_size_rejects(aspect: str | None, resolution: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frame_size(aspect, resolution)


def test_wrap_breaks_long_words_and_truncates() -> None:
    font = ImageFont.load_default(size=20)
    assert isinstance(font, ImageFont.FreeTypeFont)
    lines = _wrap("x" * 200, font, 100, max_lines=50)
    assert len(lines) > 1
    assert all(font.getlength(line) <= 100 for line in lines)
    many = _wrap("word " * 200, font, 100, max_lines=3)
    assert len(many) == 3
    assert many[-1].endswith("...")
    assert _wrap("one\n\ntwo", font, 500, max_lines=5) == ["one", "two"]


def _spec(**changes: object) -> TestcardSpec:
    fields: dict[str, object] = {
        "text": "a lighthouse in a storm",
        "width": 426,
        "height": 240,
        "duration_s": 1.0,
        "fps": 24,
        "seed": 7,
    }
    fields.update(changes)
    return TestcardSpec(**fields)  # type: ignore[arg-type]


def _decode(path: Path) -> tuple[str, int, int, list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        duration = float(stream.duration * stream.time_base)
        return stream.codec_context.name, stream.width, stream.height, frames, duration


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_render_writes_h264_with_exact_frames(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    progress: list[tuple[int, int]] = []
    render(_spec(duration_s=1.5), out, on_progress=lambda d, t: progress.append((d, t)))

    codec, width, height, frames, duration = _decode(out)
    assert (codec, width, height) == ("h264", 426, 240)
    assert len(frames) == 36
    assert duration == pytest.approx(1.5, abs=1 / 24)
    assert not np.array_equal(frames[0], frames[-1])  # the pattern moves
    assert progress == [(n, 36) for n in range(1, 37)]
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_render_is_deterministic(tmp_path: Path) -> None:
    render(_spec(), tmp_path / "a.mp4")
    render(_spec(), tmp_path / "b.mp4")
    render(_spec(seed=8), tmp_path / "c.mp4")
    assert _sha256(tmp_path / "a.mp4") == _sha256(tmp_path / "b.mp4")
    assert _sha256(tmp_path / "a.mp4") != _sha256(tmp_path / "c.mp4")


def _png(width: int, height: int) -> bytes:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 0] = 220  # mostly red, with a blue ramp so panning shows
    pixels[:, :, 2] = ramp
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_render_animates_an_image(tmp_path: Path) -> None:
    out = tmp_path / "image.mp4"
    render(_spec(text="", image=_png(300, 300), width=240, height=240), out)

    codec, width, height, frames, _ = _decode(out)
    assert (codec, width, height, len(frames)) == ("h264", 240, 240, 24)
    corner = frames[0][:40, -60:].reshape(-1, 3).mean(axis=0)  # clear of the overlays
    assert corner[0] > 150 and corner[1] < 80  # the image's red shows through
    assert not np.array_equal(frames[0], frames[-1])  # and the view moves


def test_should_stop_raises_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "stopped.mp4"
    done: list[int] = []

    with pytest.raises(RenderStopped) as caught:
        render(_spec(), out, on_progress=lambda d, t: done.append(d), should_stop=lambda: 3 in done)

    assert caught.value.frames_done == 3
    assert list(tmp_path.iterdir()) == []


def test_stop_after_frames(tmp_path: Path) -> None:
    with pytest.raises(RenderStopped) as caught:
        render(_spec(stop_after_frames=12), tmp_path / "half.mp4")
    assert (caught.value.frames_done, caught.value.total_frames) == (12, 24)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("size", "message"),
    [((427, 240), "must be even"), ((2560, 1440), "above the testcard maximum")],
)
def test_render_rejects_bad_sizes(tmp_path: Path, size: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(_spec(width=size[0], height=size[1]), tmp_path / "bad.mp4")
    assert list(tmp_path.iterdir()) == []


def test_spec_from_json() -> None:
    spec, out = spec_from_json(
        {
            "text": "hi",
            "width": 426,
            "height": 240,
            "duration_s": 2,
            "seed": 3,
            "image": "aGVsbG8=",
            "out_path": "/tmp/x.mp4",
        }
    )
    assert spec == TestcardSpec(
        text="hi", width=426, height=240, duration_s=2.0, seed=3, image=b"hello"
    )
    assert out == Path("/tmp/x.mp4")
    assert spec.total_frames == 48
