"""The diffusers backend: open video models (Wan, LTX-Video...) on this machine's GPU or CPU.

A model's pipeline loads the first time one of its runs comes, once per worker process, and
stays warm. Everything torch does (the import, loading, denoising, decoding, encoding) runs
on the backend's one pipeline thread, so runs take turns on the device (``max_active``, one
by default) while the event loop keeps heartbeats and progress flowing.

Progress comes from the pipeline's step callback. A cancelled run stops after the step in
progress (the callback raises), and its task ends only once the thread is free, so the next
run finds the device free. Out-of-memory, load errors and bad parameters fail the run with
a message saying what to change; the worker goes on.

Weights never come from the network: ``local_files_only`` and ``HF_HUB_OFFLINE``. A model
whose ``model_path`` is missing is reported when the worker starts (``model.unavailable``);
its runs fail saying so until the folder is there (no restart needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pydantic import ValidationError

from vidgate.backends.base import (
    FAILED_FRIENDLY,
    GenerationFailed,
    LocalOutput,
    ProgressCallback,
)
from vidgate.backends.diffusers_options import DiffusersOptions, error_text
from vidgate.backends.input_image import ImageLimits, check_image, invalid, load_image
from vidgate.logs import event
from vidgate.netguard import Resolve, system_resolve
from vidgate.runs.request import GenerationRequest

log = logging.getLogger("vidgate.diffusers")

OUTPUT_NAME = "video.mp4"
UNAVAILABLE_FRIENDLY = "This model is not available right now. Please try again later."
_PROGRESS_EVERY_S = 0.25
"""Progress is relayed at most this often per run (each relay is a write and an event)."""


def parse_options(slug: str, options: Mapping[str, Any]) -> DiffusersOptions:
    """A model's options, checked (settings check them at load too)."""
    try:
        return DiffusersOptions.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(error_text(err["loc"], err["msg"]) for err in exc.errors())
        raise GenerationFailed(
            f"model {slug!r}: invalid diffusers options: {problems}", user_friendly=FAILED_FRIENDLY
        ) from None


class DiffusersBackend:
    """Runs diffusers pipelines on this machine (see the module doc)."""

    name = "diffusers"

    def __init__(self, *, max_active: int = 1, resolve: Resolve = system_resolve) -> None:
        self.max_active: int | None = max_active
        """Runs of this backend at once in one worker process (they share its thread)."""
        self._resolve = resolve
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffusers")
        self._loads: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    def check(self, models: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """Why each model (slug -> options) that cannot run here cannot, each logged as
        ``model.unavailable``: for the worker's start."""
        problems: dict[str, str] = {}
        for slug, options in models.items():
            try:
                problem = parse_options(slug, options).missing()
            except GenerationFailed as exc:
                problem = str(exc)
            if problem is not None:
                problems[slug] = problem
                event(log, "model.unavailable", logging.ERROR, model=slug, error=problem)
        return problems

    async def generate(
        self,
        request: GenerationRequest,
        options: Mapping[str, Any],
        workdir: Path,
        on_progress: ProgressCallback,
    ) -> LocalOutput:
        slug = request.model
        opts = parse_options(slug, options)
        problem = opts.missing()
        if problem is not None:
            raise GenerationFailed(
                f"model {slug!r} is unavailable on this worker: {problem}. Put the model's "
                "files there (see docs/gpu.md; no restart needed), or run this model on a "
                "worker that has them (vidgate worker --models)",
                user_friendly=UNAVAILABLE_FRIENDLY,
            )
        kwargs, frames = await self._arguments(request, opts)
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        pipe = await self._pipeline(slug, opts)
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        out_path = workdir / OUTPUT_NAME
        event(log, "diffusers.started", model=slug, frames=frames, seed=seed, steps=opts.steps)
        written = await self._on_thread(
            functools.partial(_run, pipe, slug, kwargs, seed % 2**32, opts, out_path),
            on_progress,
        )
        return LocalOutput(out_path, duration_s=written / opts.fps)

    async def _arguments(
        self, request: GenerationRequest, opts: DiffusersOptions
    ) -> tuple[dict[str, Any], int]:
        """The pipeline's arguments for ``request`` (but the generator), and its frame count;
        a request they cannot be made from fails, worded for its sender."""
        if opts.mode == "text" and not (request.prompt or "").strip():
            raise invalid(f"{request.model} needs a prompt")
        if request.duration_s is not None and not 1 <= request.duration_s <= opts.max_duration_s:
            raise invalid(
                f"duration must be from 1 to {opts.max_duration_s} seconds for "
                f"{request.model}; got {request.duration_s:g}"
            )
        data: bytes | None = None
        image_size: tuple[int, int] | None = None
        if opts.mode == "image":
            limits = ImageLimits(
                opts.image_fetch_timeout_s, opts.image_max_bytes, opts.allow_private_hosts
            )
            data = await load_image(request, limits, self._resolve)
            image_size = await asyncio.to_thread(check_image, data)
        try:
            width, height = opts.frame_size(request.resolution, request.aspect_ratio, image_size)
        except ValueError as exc:
            raise invalid(f"{request.model}: {exc}") from None
        image = None if data is None else await asyncio.to_thread(_fitted, data, width, height)
        frames = opts.frame_count(request.duration_s)
        kwargs: dict[str, Any] = {
            "prompt": request.prompt or "",
            "height": height,
            "width": width,
            "num_frames": frames,
            "num_inference_steps": opts.steps,
            "guidance_scale": opts.guidance_scale,
            "output_type": "np",
        }
        negative = request.negative_prompt or opts.default_negative_prompt
        if negative:
            kwargs["negative_prompt"] = negative
        if image is not None:
            kwargs["image"] = image
        return {**kwargs, **opts.call_options}, frames

    async def _pipeline(self, slug: str, opts: DiffusersOptions) -> Any:
        """The loaded pipeline for ``opts``: loaded on the thread the first time, then kept.
        A failed load is tried again by the next run."""
        key = opts.load_key()
        loading = self._loads.get(key)
        if loading is None:
            event(log, "model.loading", model=slug, source=opts.source)
            loading = asyncio.get_running_loop().run_in_executor(self._thread, _load, opts, slug)
            self._loads[key] = loading

            def forget_failure(done: asyncio.Future[Any]) -> None:
                if done.cancelled() or done.exception() is not None:
                    self._loads.pop(key, None)

            loading.add_done_callback(forget_failure)
        # A run cancelled while the model loads leaves the load going: the next run uses it.
        return await asyncio.shield(loading)

    async def _on_thread(self, work: Any, on_progress: ProgressCallback) -> int:
        """Run ``work(stop, report)`` on the pipeline thread. Cancelled, it sets ``stop`` and
        waits until the thread has let go (one step), then re-raises."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        relay = _Relay(on_progress, loop)
        job = loop.run_in_executor(self._thread, work, stop, relay.report)
        try:
            written: int = await asyncio.shield(job)
        except asyncio.CancelledError:
            stop.set()
            while not job.done():  # the device is busy until the thread returns
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([job])
            if not job.cancelled() and job.exception() is not None:
                event(log, "diffusers.stopped", reason=str(job.exception()))
            raise
        finally:
            await relay.close()
        await on_progress(99.0)
        return written


class _Relay:
    """Hands progress from the pipeline thread to the event loop, at most every 0.25 s."""

    def __init__(self, on_progress: ProgressCallback, loop: asyncio.AbstractEventLoop) -> None:
        self._on_progress = on_progress
        self._loop = loop
        self._latest = 0.0
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._relay())

    def report(self, percent: float) -> None:
        """Called on the pipeline thread."""
        self._latest = percent
        with contextlib.suppress(RuntimeError):  # the loop is gone: no one listens
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _relay(self) -> None:
        sent = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._latest > sent:
                sent = self._latest
                await self._on_progress(sent)
            await asyncio.sleep(_PROGRESS_EVERY_S)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _fitted(data: bytes, width: int, height: int) -> Image.Image:
    """The input image upright, cropped to the frame's aspect ratio and scaled to it."""
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    return ImageOps.fit(upright, (width, height), Image.Resampling.LANCZOS)


# --- on the pipeline thread --------------------------------------------------------------


def _load(opts: DiffusersOptions, slug: str) -> Any:
    # Before huggingface_hub is first imported: it reads these once. No look-ups, no
    # telemetry; files come from the model folder or the cache only.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from vidgate.backends import diffusers_pipeline

    return diffusers_pipeline.load(opts, slug)


def _run(
    pipe: Any,
    slug: str,
    kwargs: dict[str, Any],
    seed: int,
    opts: DiffusersOptions,
    out_path: Path,
    stop: threading.Event,
    report: Any,
) -> int:
    from vidgate.backends import diffusers_pipeline

    call = diffusers_pipeline.Call(
        slug=slug,
        kwargs=kwargs,
        seed=seed,
        steps=opts.steps,
        fps=opts.fps,
        out_path=out_path,
        stop=stop,
        on_progress=report,
        oom_at_step=opts.simulate_oom_at_step,
    )
    return diffusers_pipeline.run(pipe, call)
