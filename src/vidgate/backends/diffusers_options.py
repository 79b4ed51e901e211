"""The ``options`` of a diffusers model's config section, checked when settings load, and
the mapping from the API's parameters to the pipeline's.

Nothing here imports torch or diffusers: ``vidgate serve`` checks these options (and shows
the catalog they make) without them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vidgate.runs.request import ASPECT_RATIOS

Dtype = Literal["float32", "float16", "bfloat16"]
Offload = Literal["none", "model", "sequential"]


class DiffusersOptions(BaseModel):
    """A ``[models.SLUG.options]`` table of a ``backend = "diffusers"`` model (every key is
    described in docs/gpu.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What to load, from where: never from the network.
    pipeline: str = "auto"
    """A diffusers pipeline class (``WanPipeline``, ``LTXImageToVideoPipeline``...), or
    ``auto``: ``DiffusionPipeline`` picks the class the model's ``model_index.json`` names."""
    model_path: Path | None = None
    """A local folder in diffusers layout (``model_index.json`` at its top)."""
    model_id: str | None = None
    """A Hugging Face repo id, found in an already populated cache (``cache_dir``, else the
    default ``HF_HOME`` cache); never downloaded."""
    cache_dir: Path | None = None
    revision: str | None = None
    dtype: Dtype = "bfloat16"
    device: str = "cuda"
    offload: Offload = "none"
    """``model``: each component moves to the device while it runs (less memory, a little
    slower); ``sequential``: layer by layer (least memory, much slower)."""
    vae_tiling: bool = False
    vae_slicing: bool = False

    # How a request becomes a pipeline call.
    mode: Literal["text", "image"] = "text"
    """``image``: image-to-video (the pipeline gets the request's image)."""
    steps: int = Field(30, ge=1, le=1000)
    guidance_scale: float = Field(5.0, ge=0)
    fps: int = Field(16, ge=1, le=120)
    default_duration_s: int = Field(5, ge=1)
    max_duration_s: int = Field(5, ge=1)
    frame_step: int = Field(4, ge=1)
    """The pipeline takes ``frame_step * k + 1`` frames (Wan: 4, LTX-Video: 8)."""
    max_frames: int | None = Field(None, ge=1)
    sizes: dict[str, tuple[int, int]] = Field(default_factory=lambda: {"480p": (832, 480)})
    """Resolution name -> ``[width, height]`` for 16:9 (9:16 swaps them); other aspect ratios
    keep the short side."""
    default_resolution: str | None = None
    """One of ``sizes``; default the first."""
    size_multiple: int = Field(16, ge=2, multiple_of=2)
    """Width and height must be multiples of this (the VAE's and transformer's patches)."""
    default_negative_prompt: str = ""
    call_options: dict[str, Any] = Field(default_factory=dict)
    """More keyword arguments for every pipeline call, as they are (e.g. LTX-Video's
    ``decode_timestep``)."""

    # Inputs.
    image_fetch_timeout_s: float = Field(10.0, gt=0, le=300)
    image_max_bytes: int = Field(4 * 1024 * 1024, ge=1)
    allow_private_hosts: bool = False

    simulate_oom_at_step: int | None = Field(None, ge=1)
    """Testing an installation: every run fails with an out-of-memory error at this step."""

    @model_validator(mode="after")
    def _check(self) -> DiffusersOptions:
        if (self.model_path is None) == (self.model_id is None):
            raise ValueError(
                "set exactly one of model_path (a local folder in diffusers layout) or "
                "model_id (a repo id in an already populated Hugging Face cache)"
            )
        if self.default_duration_s > self.max_duration_s:
            raise ValueError(
                f"default_duration_s ({self.default_duration_s}) is above max_duration_s "
                f"({self.max_duration_s})"
            )
        if not self.sizes:
            raise ValueError('sizes needs at least one entry, e.g. {"480p" = [832, 480]}')
        for name, (width, height) in self.sizes.items():
            if width % self.size_multiple or height % self.size_multiple or width % 2 or height % 2:
                raise ValueError(
                    f"sizes.{name}: {width}x{height} must be even and a multiple of "
                    f"size_multiple ({self.size_multiple}) on both sides"
                )
        if self.default_resolution is not None and self.default_resolution not in self.sizes:
            raise ValueError(
                f"default_resolution {self.default_resolution!r} is not one of sizes: "
                + ", ".join(self.sizes)
            )
        if self.device != "cpu" and not self.device.startswith("cuda") and self.device != "mps":
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps; got {self.device!r}")
        return self

    @property
    def resolution(self) -> str:
        return self.default_resolution or next(iter(self.sizes))

    @property
    def source(self) -> str:
        """Where the weights are, for messages."""
        if self.model_path is not None:
            return str(self.model_path)
        return f"{self.model_id} in {self.cache_dir or 'the default Hugging Face cache'}"

    def load_key(self) -> tuple[Any, ...]:
        """Models whose keys are equal share one loaded pipeline."""
        return (
            self.pipeline,
            self.model_path,
            self.model_id,
            self.cache_dir,
            self.revision,
            self.dtype,
            self.device,
            self.offload,
            self.vae_tiling,
            self.vae_slicing,
        )

    def missing(self) -> str | None:
        """Why the weights cannot be there (a missing folder), else None. Only a folder's
        presence is checked: a cache is checked by loading."""
        if self.model_path is not None:
            if not self.model_path.is_dir():
                return f"model_path {self.model_path} is not a folder"
            if not (self.model_path / "model_index.json").is_file():
                return (
                    f"model_path {self.model_path} holds no model_index.json (not a model in "
                    "diffusers layout)"
                )
        elif self.cache_dir is not None and not self.cache_dir.is_dir():
            return f"cache_dir {self.cache_dir} is not a folder"
        return None

    def parameters(self) -> dict[str, dict[str, Any]]:
        """The catalog's parameters of a model with these options."""
        return {
            "duration": {
                "type": "integer",
                "default": self.default_duration_s,
                "min": 1,
                "max": self.max_duration_s,
                "description": "Length in seconds",
            },
            "aspect_ratio": {"type": "select", "default": "16:9", "options": list(ASPECT_RATIOS)},
            "resolution": {
                "type": "select",
                "default": self.resolution,
                "options": list(self.sizes),
            },
            "seed": {"type": "integer", "description": "Same seed, same video on one machine"},
            "negative_prompt": {"type": "string"},
        }

    def frame_count(self, duration_s: float | None) -> int:
        """Frames for ``duration_s`` (default ``default_duration_s``) at ``fps``: the nearest
        count of the form ``frame_step * k + 1``, within ``max_frames``."""
        wanted = round((duration_s or self.default_duration_s) * self.fps)
        steps = max(1, round((wanted - 1) / self.frame_step))
        if self.max_frames is not None:
            steps = min(steps, max(0, (self.max_frames - 1) // self.frame_step))
        return steps * self.frame_step + 1

    def frame_size(
        self,
        resolution: str | None,
        aspect_ratio: str | None,
        image_size: tuple[int, int] | None = None,
    ) -> tuple[int, int]:
        """``(width, height)`` for a request. ``sizes`` gives the size for 16:9 as the model
        prefers it (Wan's 832x480 is near 16:9), swapped for 9:16; other ratios keep its short
        side and scale the long side, rounded to ``size_multiple``. ``auto`` (or none)
        follows the image's orientation, else 16:9. Raises ValueError."""
        name = resolution or self.resolution
        if name not in self.sizes:
            raise ValueError(f"resolution must be one of {', '.join(self.sizes)}; got {name!r}")
        width, height = self.sizes[name]
        short = min(width, height)
        ratio = _ratio(aspect_ratio, image_size)
        stretch = max(ratio, 1 / ratio)
        if math.isclose(stretch, 16 / 9, rel_tol=0.01):
            long = max(width, height)
        else:
            long = max(short, round(short * stretch / self.size_multiple) * self.size_multiple)
        return (long, short) if ratio >= 1 else (short, long)


def _ratio(aspect_ratio: str | None, image_size: tuple[int, int] | None) -> float:
    if aspect_ratio in (None, "auto"):
        if image_size is None or min(image_size) <= 0:
            return 16 / 9
        width, height = image_size
        return 16 / 9 if width > height else 9 / 16 if height > width else 1.0
    parts = aspect_ratio.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r:.20}"
        )
    return int(parts[0]) / int(parts[1])


def diffusers_problem(
    options: dict[str, Any], text_to_video: bool, image_to_video: bool
) -> str | None:
    """What is wrong with a diffusers model's section, said after its ``models.SLUG``
    (``.options: ...`` or ``: ...``); None if nothing is."""
    try:
        checked = DiffusersOptions.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(error_text(err["loc"], err["msg"]) for err in exc.errors())
        return f".options: {problems} (see docs/gpu.md)"
    wanted = "image_to_video" if checked.mode == "image" else "text_to_video"
    if not (image_to_video if checked.mode == "image" else text_to_video):
        return f": options.mode is {checked.mode!r}, so set {wanted} = true"
    return None


def error_text(location: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")  # our own checks name their keys
    return f"{'.'.join(str(part) for part in location)}: {message}" if location else message
