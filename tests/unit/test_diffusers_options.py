"""How a request's duration, resolution and aspect ratio become a diffusers pipeline's frame
count and frame size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vidgate.backends.diffusers_options import DiffusersOptions
from vidgate.config import load_settings

WAN = DiffusersOptions(model_path="/m", fps=16, frame_step=4, max_duration_s=5)
LTX = DiffusersOptions(
    model_path="/m",
    fps=24,
    frame_step=8,
    max_frames=161,
    max_duration_s=10,
    size_multiple=32,
    sizes={"480p": (704, 480)},
)


@pytest.mark.parametrize(
    ("options", "duration", "frames"),
    [
        (WAN, 5, 81),  # 80 frames at 16 fps, as 4k + 1
        (WAN, 1, 17),
        (WAN, None, 81),  # the default duration, 5 s
        (LTX, 5, 121),  # 120 at 24 fps, as 8k + 1
        (LTX, 10, 161),  # 241 wanted; max_frames caps it
    ],
)
def test_frame_count_is_the_nearest_the_pipeline_takes(
    options: DiffusersOptions, duration: int | None, frames: int
) -> None:
    assert options.frame_count(duration) == frames


@pytest.mark.parametrize(
    ("aspect_ratio", "image_size", "size"),
    [
        ("16:9", None, (832, 480)),
        ("9:16", None, (480, 832)),
        ("1:1", None, (480, 480)),
        ("4:3", None, (640, 480)),
        ("3:4", None, (480, 640)),
        ("21:9", None, (1120, 480)),
        (None, None, (832, 480)),
        ("auto", (600, 900), (480, 832)),  # a portrait image
        ("auto", (500, 500), (480, 480)),
    ],
)
def test_frame_size_keeps_the_short_side_and_the_multiple(
    aspect_ratio: str | None, image_size: tuple[int, int] | None, size: tuple[int, int]
) -> None:
    assert WAN.frame_size("480p", aspect_ratio, image_size) == size


def test_an_unknown_resolution_is_refused_naming_the_offered_ones() -> None:
    with pytest.raises(ValueError, match="resolution must be one of 480p; got '720p'"):
        WAN.frame_size("720p", "16:9")


def test_the_catalog_offers_the_configured_sizes_and_durations() -> None:
    parameters = LTX.parameters()
    assert parameters["resolution"]["options"] == ["480p"]
    assert parameters["duration"]["max"] == 10


def test_the_sample_configurations_in_docs_gpu_md_load(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "gpu.md").read_text()
    config = tmp_path / "gpu.toml"
    config.write_text("\n".join(re.findall(r"```toml\n(.*?)```", doc, flags=re.S)))
    settings = load_settings(config_file=config, env={})
    diffusers = {slug for slug, m in settings.models.items() if m.backend == "diffusers"}
    assert diffusers == {"wan-t2v", "wan-i2v", "wan22-t2v", "ltx-t2v", "ltx-i2v"}
    ltx = DiffusersOptions.model_validate(settings.models["ltx-t2v"].options)
    assert ltx.frame_count(5) == 121 and ltx.frame_size("480p", "16:9") == (704, 480)
