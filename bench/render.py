"""Rendering: testcard's frames per second, against a bare PyAV H.264 encode of the same
number of flat frames at the same size (the cost of drawing text and patterns)."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from bench.report import Figure

SECTION = "Rendering (one process, 854x480, 5 s at 24 fps)"


def render_bench() -> list[Figure]:
    import av
    import numpy as np

    from vidgate.backends.testcard_render import TestcardSpec, render

    spec = TestcardSpec(text="a benchmark", width=854, height=480, duration_s=5, fps=24)
    frames = round(spec.duration_s * spec.fps)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        render(spec, Path(tmp) / "out.mp4")
        ours = frames / (time.perf_counter() - started)
    started = time.perf_counter()
    with av.open(io.BytesIO(), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "veryfast"}
        stream.codec_context.thread_count = 1
        pixels = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
        for i in range(frames):
            pixels[:] = i % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    baseline = frames / (time.perf_counter() - started)
    name = "bare H.264 encode of flat frames"
    return [
        Figure(SECTION, name, baseline, "fps"),
        Figure(SECTION, "testcard render", ours, "fps", name, baseline),
    ]
