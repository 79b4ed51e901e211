"""A small real MP4 for emulators to serve as a provider's output."""

from __future__ import annotations

import functools
import io

import av
import numpy as np


@functools.cache
def sample_mp4(width: int = 64, height: int = 64, seconds: int = 1, fps: int = 8) -> bytes:
    """An H.264 MP4 of ``seconds`` seconds; the same bytes on every call."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(seconds * fps):
            pixels = np.full((height, width, 3), (i * 30) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()
