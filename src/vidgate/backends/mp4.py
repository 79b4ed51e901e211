"""Writing RGB frames as an H.264 MP4 with PyAV's bundled libx264: one encoder for every local
backend (the testcard renderer, diffusers).

The same frames give the same bytes every time: one encoder thread without lookahead,
bitexact flags and no wall-clock metadata. Colours are BT.709, limited range, and the stream
is tagged so.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

Pixels = npt.NDArray[np.uint8]

# BT.709 in limited range: the (R, G, B, offset) rows that make Y, Cb and Cr from RGB.
_BT709_Y = (0.18259, 0.61423, 0.06201, 16.0)
_BT709_CB = (-0.10064, -0.33857, 0.43922, 128.0)
_BT709_CR = (0.43922, -0.39894, -0.04027, 128.0)
_BT709 = 1  # the value FFmpeg uses for BT.709 primaries, transfer and matrix
_LIMITED_RANGE = 1
# Single-threaded libx264 without lookahead: the same frames give the same bytes every time
# (with its lookahead on, x264 was seen to vary between identical runs, threads=1 or not).
_X264_OPTIONS = {
    "preset": "veryfast",
    "crf": "23",
    "threads": "1",
    "x264-params": "rc-lookahead=0:mbtree=0",
}


def yuv420(frame: Pixels) -> Pixels:
    """RGB to planar 4:2:0 (BT.709, limited range), matching the tags on the stream."""
    image = Image.fromarray(frame)
    half = image.reduce(2)
    planes = (
        image.convert("L", matrix=_BT709_Y),
        half.convert("L", matrix=_BT709_CB),
        half.convert("L", matrix=_BT709_CR),
    )
    flat = np.frombuffer(b"".join(plane.tobytes() for plane in planes), dtype=np.uint8)
    return flat.reshape(-1, frame.shape[1])


class Mp4Writer:
    """An H.264 MP4 at ``path``, ``width`` x ``height`` (both even) at ``fps``: feed it
    ``(height, width, 3)`` uint8 RGB frames with :meth:`write`, then :meth:`close` it (or use
    it as a context manager)."""

    def __init__(self, path: Path, width: int, height: int, fps: int) -> None:
        if width % 2 or height % 2 or min(width, height) < 2:
            raise ValueError(f"frame size must be even, got {width}x{height}")
        self.width, self.height = width, height
        self._container: Any = av.open(
            str(path), "w", format="mp4", options={"movflags": "+faststart", "fflags": "+bitexact"}
        )
        stream = self._container.add_stream(
            "libx264", rate=fps, options={**_X264_OPTIONS, "g": str(2 * fps)}
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        codec = stream.codec_context
        codec.flags |= av.codec.context.Flags.bitexact
        codec.colorspace = codec.color_primaries = codec.color_trc = _BT709
        codec.color_range = _LIMITED_RANGE
        self._stream: Any = stream
        self._count = 0

    def write(self, frame: Pixels) -> None:
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame is {frame.shape}; expected ({self.height}, {self.width}, 3)")
        video_frame = av.VideoFrame.from_ndarray(yuv420(frame), format="yuv420p")
        video_frame.pts = self._count
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder (only after every frame was written) and close the file."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def abandon(self) -> None:
        """Close the file without flushing (it is about to be removed)."""
        self._container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()
