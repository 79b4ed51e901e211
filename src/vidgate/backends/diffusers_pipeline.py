"""The torch side of the diffusers backend: load a pipeline, run one call, encode its frames.

Everything here is synchronous and runs on the backend's pipeline thread (torch releases the
GIL while it computes, so the worker's event loop keeps its heartbeats going). This module
imports torch and diffusers: :mod:`vidgate.backends.diffusers` imports it on that thread,
the first time a diffusers model runs, never at start.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidgate.backends.base import FAILED_FRIENDLY, GenerationFailed
from vidgate.backends.diffusers_options import DiffusersOptions
from vidgate.backends.mp4 import Mp4Writer, Pixels
from vidgate.logs import event

log = logging.getLogger("vidgate.diffusers")

OOM_FRIENDLY = (
    "The video did not fit in the GPU's memory. Try a lower resolution or a shorter duration."
)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Stopped(Exception):
    """The run was cancelled: the pipeline stopped between two steps."""


@dataclass(frozen=True)
class Call:
    """One run's pipeline call and what it writes."""

    slug: str
    kwargs: dict[str, Any]
    """The pipeline's arguments, but for ``generator`` (made here from ``seed``)."""
    seed: int
    steps: int
    fps: int
    out_path: Path
    stop: threading.Event
    on_progress: Callable[[float], None]
    oom_at_step: int | None = None


def load(opts: DiffusersOptions, slug: str) -> Any:
    """The pipeline ``opts`` name, on its device, from local files only. Raises
    :class:`GenerationFailed` saying what to fix."""
    started = time.monotonic()
    import diffusers  # after HF_HUB_OFFLINE is set (see diffusers.py), on this thread
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # the log says what happens
    transformers.utils.logging.disable_progress_bar()
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise _load_failed(
            slug,
            opts,
            f"device {opts.device!r} is configured but torch {torch.__version__} sees no CUDA "
            'device; install a CUDA build of torch (docs/gpu.md) or set device = "cpu"',
        )
    cls: Any = diffusers.DiffusionPipeline if opts.pipeline == "auto" else None
    if cls is None:
        cls = getattr(diffusers, opts.pipeline, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
            raise _load_failed(
                slug,
                opts,
                f"pipeline {opts.pipeline!r} is not a pipeline class of diffusers "
                f'{diffusers.__version__}; name one (WanPipeline, LTXPipeline...) or use "auto"',
            )
    source = str(opts.model_path) if opts.model_path is not None else str(opts.model_id)
    try:
        pipe = cls.from_pretrained(
            source,
            dtype=_DTYPES[opts.dtype],
            local_files_only=True,
            cache_dir=str(opts.cache_dir) if opts.cache_dir is not None else None,
            revision=opts.revision,
        )
        if opts.offload == "model":
            pipe.enable_model_cpu_offload(device=opts.device)
        elif opts.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=opts.device)
        else:
            pipe.to(opts.device)
        vae = getattr(pipe, "vae", None)
        if opts.vae_tiling and vae is not None:
            vae.enable_tiling()
        if opts.vae_slicing and vae is not None:
            vae.enable_slicing()
        pipe.set_progress_bar_config(disable=True)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        _free_memory()
        raise _load_failed(
            slug,
            opts,
            f'out of memory while loading ({exc}); use a smaller dtype, offload = "model" '
            '(or "sequential"), or a device with more memory (docs/gpu.md)',
        ) from None
    except Exception as exc:  # any library's error: the message is what helps
        raise _load_failed(slug, opts, f"{type(exc).__name__}: {exc}") from exc
    event(
        log,
        "model.loaded",
        model=slug,
        device=_runs_on(pipe, opts),
        offload=opts.offload,
        seconds=round(time.monotonic() - started, 2),
    )
    return pipe


def _runs_on(pipe: Any, opts: DiffusersOptions) -> str:
    """Where the pipeline runs (cuda:0, cpu...): what an operator checks first when runs
    are slow. With offload its modules wait on the CPU (or as empty shells), and the
    device they run on is the pipeline's execution device."""
    try:
        return str(pipe._execution_device if opts.offload != "none" else pipe.device)
    except Exception:  # a pipeline without the property: what was asked for
        return opts.device


def _load_failed(slug: str, opts: DiffusersOptions, why: str) -> GenerationFailed:
    return GenerationFailed(
        f"model {slug!r} could not be loaded from {opts.source} (pipeline {opts.pipeline}, "
        f"{opts.dtype} on {opts.device}): {why}",
        user_friendly=FAILED_FRIENDLY,
    )


def run(pipe: Any, call: Call) -> int:
    """Run the pipeline and write its frames to ``call.out_path``; returns the frame count.
    Raises :class:`Stopped` once ``call.stop`` is set (checked after every step and every
    frame written), and :class:`GenerationFailed` for anything else."""
    accepted = inspect.signature(pipe.__call__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(call.kwargs) - set(accepted))
        if unknown:
            raise GenerationFailed(
                f"model {call.slug!r}: pipeline {type(pipe).__name__} takes no "
                f"{', '.join(unknown)} argument (an image-to-video model needs an image-to-video "
                "pipeline; call_options must name the pipeline's own arguments)",
                user_friendly=FAILED_FRIENDLY,
            )

    def on_step_end(
        _pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if call.oom_at_step is not None and step + 1 >= call.oom_at_step:
            raise torch.OutOfMemoryError(
                f"simulated out of memory at step {step + 1} (option simulate_oom_at_step)"
            )
        if call.stop.is_set():
            raise Stopped(f"stopped after step {step + 1} of {call.steps}")
        call.on_progress(90.0 * (step + 1) / call.steps)
        return tensors

    try:
        noise = torch.Generator("cpu").manual_seed(call.seed)  # the same start on any device
        output = pipe(**call.kwargs, generator=noise, callback_on_step_end=on_step_end)
        frames = output.frames[0]
    except Stopped:
        raise
    except (torch.OutOfMemoryError, MemoryError) as exc:
        _free_memory()
        height, width = call.kwargs.get("height"), call.kwargs.get("width")
        raise GenerationFailed(
            f"out of memory generating {width}x{height}, {call.kwargs.get('num_frames')} frames "
            f"with model {call.slug!r} ({exc}); ask for a lower resolution or a shorter "
            'duration, or set offload = "model" and vae_tiling = true in the model\'s options '
            "(docs/gpu.md)",
            user_friendly=OOM_FRIENDLY,
        ) from None
    except Exception as exc:
        raise GenerationFailed(
            f"model {call.slug!r}: pipeline {type(pipe).__name__} failed: "
            f"{type(exc).__name__}: {exc}",
            user_friendly=FAILED_FRIENDLY,
        ) from exc
    call.on_progress(95.0)
    return _encode(_pixels(frames), call)


def _pixels(frames: Any) -> list[Pixels]:
    """One video's frames (numpy floats in [0, 1], or PIL images) as uint8 RGB arrays."""
    if isinstance(frames, list) and frames and isinstance(frames[0], Image.Image):
        return [np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in frames]
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return list(array)


def _encode(frames: list[Pixels], call: Call) -> int:
    height, width = frames[0].shape[:2]
    tmp = call.out_path.with_name(f".{call.out_path.name}.tmp")
    try:
        with Mp4Writer(tmp, width, height, call.fps) as writer:
            for frame in frames:
                if call.stop.is_set():
                    raise Stopped("stopped while encoding")
                writer.write(frame)
        os.replace(tmp, call.out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frames)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
