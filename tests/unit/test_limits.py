"""Per-model limits: refusals that name the allowed values, snapping, the catalog's view of
them, and the checks at config load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from vidgate.config import ConfigError, load_settings
from vidgate.runs.catalog import Catalog, ModelSpec, generic_parameters
from vidgate.runs.errors import InvalidRequest
from vidgate.runs.limits import (
    ModelLimits,
    nearest_aspect_ratio,
    nearest_duration,
    nearest_resolution,
)
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import Limits, normalise
from vidgate.runs.request_schema import submit_schema
from vidgate.runs.submit import prepare_run
from vidgate.services import build_catalog

VEO = ModelLimits(durations=(4, 6, 8), resolutions=("720p", "1080p"), aspect_ratios=("16:9",))


def _request(**fields: object):  # type: ignore[no-untyped-def]
    return normalise({"model": "veo3-video", "prompt": "p", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"duration": "5s"}, "'duration' must be one of 4, 6, 8 seconds for 'veo3-video'; got 5"),
        ({"duration": 7.5}, "'duration' must be one of 4, 6, 8 seconds for 'veo3-video'; got 7.5"),
        ({"resolution": "480p"}, "'resolution' must be one of 720p, 1080p for 'veo3-video'"),
        ({"aspect_ratio": "1:1"}, "'aspect_ratio' must be one of 16:9 for 'veo3-video'; got '1:1'"),
    ],
)
def test_a_value_outside_the_limits_is_refused_naming_them(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        VEO.apply(_request(**fields), "veo3-video")
    assert message in str(refused.value)
    assert refused.value.field == next(iter(fields))


def test_allowed_and_absent_values_pass_unchanged() -> None:
    request = _request(duration=6, resolution="1080p", aspect_ratio="16:9")
    assert VEO.apply(request, "veo3-video") == (request, {})
    bare = _request()
    assert VEO.apply(bare, "veo3-video") == (bare, {})
    assert ModelLimits().apply(_request(duration=5), "m")[1] == {}


@pytest.mark.parametrize(
    ("seconds", "used"), [(5, 6), (7, 8), (1, 4), (30, 8), (4.9, 4), (6.0, 6), (3, 4)]
)
def test_nearest_duration_takes_the_longer_on_a_tie(seconds: float, used: int) -> None:
    assert nearest_duration(seconds, (4, 6, 8)) == used


@pytest.mark.parametrize(
    ("resolution", "used"),
    [
        ("480p", "720p"),
        ("1440p", "1080p"),
        ("4k", "1080p"),
        ("1280x720", "720p"),
        ("900p", "1080p"),
    ],
)
def test_nearest_resolution_by_height(resolution: str, used: str) -> None:
    assert nearest_resolution(resolution, ("720p", "1080p")) == used


@pytest.mark.parametrize(
    ("aspect", "used"), [("21:9", "16:9"), ("3:4", "9:16"), ("3:2", "16:9"), ("auto", "16:9")]
)
def test_nearest_aspect_ratio_by_ratio(aspect: str, used: str) -> None:
    assert nearest_aspect_ratio(aspect, ("16:9", "9:16", "1:1")) == used


def test_snapping_changes_the_request_and_says_what_was_used() -> None:
    snapping = ModelLimits(VEO.durations, VEO.resolutions, ("16:9", "9:16"), snap=True)
    request, adjusted = snapping.apply(
        _request(duration=5, resolution="480p", aspect_ratio="3:4"), "veo3-video"
    )
    assert (request.duration_s, request.resolution, request.aspect_ratio) == (6.0, "720p", "9:16")
    assert adjusted == {
        "duration": {"requested": 5, "used": 6},
        "resolution": {"requested": "480p", "used": "720p"},
        "aspect_ratio": {"requested": "3:4", "used": "9:16"},
    }


def test_the_catalog_shows_the_limits_with_defaults_among_them() -> None:
    parameters = VEO.restrict(generic_parameters())  # backend defaults: 5 s, 720p, 16:9
    assert parameters["duration"] | {"default": 6, "min": 4, "max": 8} == parameters["duration"]
    assert parameters["duration"]["options"] == [4, 6, 8]
    assert parameters["resolution"]["options"] == ["720p", "1080p"]
    assert parameters["resolution"]["default"] == "720p"
    assert parameters["aspect_ratio"] == {"type": "select", "default": "16:9", "options": ["16:9"]}
    assert generic_parameters()["duration"]["default"] == 5  # the input is left alone


def _settings(tmp_path: Path, model: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "vidgate.toml"
    config.write_text(f'[models.m]\nbackend = "testcard"\n{model}')
    return load_settings(config_file=config, env={})


def test_submit_prices_the_snapped_run_and_records_it(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, "durations = [2, 4]\nsnap_to_allowed = true\nprice_per_second_usd = 0.1\n"
    )
    catalog = build_catalog(settings)
    entry = catalog.get("m").to_json()["supported_parameters"]
    assert entry["durations"] == [2, 4] and entry["parameters"]["duration"]["default"] == 4
    new = prepare_run(
        {"model": "m", "prompt": "p", "duration": 3},
        api_key_id="k",
        catalog=catalog,
        limits=Limits(),
        moderation=Moderation((), (), "blocked"),
        now=1.0,
    )
    assert new.adjusted == {"duration": {"requested": 3, "used": 4}}
    assert new.request["duration_s"] == 4.0 and new.video_s == 4.0
    assert new.cost == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("durations = [0, 4]\n", "greater than or equal to 1"),
        ('resolutions = ["720"]\n', "'720' is not like 720p"),
        ('aspect_ratios = ["2:1"]\n', "'2:1' is not one of"),
        (
            'durations = [4, 8]\nparameters = { duration = { type = "integer", default = 5 } }\n',
            "parameters.duration.default is 5, which the model's allowed values (4, 8) leave out",
        ),
        (
            'resolutions = ["720p"]\nprice_by_resolution_usd = { "1080p" = 1.0 }\n',
            "names '1080p', which the model does not offer",
        ),
    ],
)
def test_bad_limits_are_refused_at_load(tmp_path: Path, model: str, needle: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _settings(tmp_path, model)
    assert needle in str(refused.value)


@pytest.mark.parametrize("snap", [False, True])
def test_the_published_submit_schema_accepts_what_the_limits_accept(snap: bool) -> None:
    spec = ModelSpec(
        slug="veo3-video",
        backend="veo",
        name="Veo 3",
        parameters=VEO.restrict(generic_parameters()),
        limits=dataclasses.replace(VEO, snap=snap),
    )
    validator = Draft202012Validator(submit_schema(Catalog({spec.slug: spec}), Limits()))
    bodies = [
        {"duration": duration, "resolution": resolution, "aspect_ratio": aspect}
        for duration in (6, 6.0, "6s", " 06 ", "8.0", 5, "5s", 4.5, 30)
        for resolution, aspect in (("720p", "16:9"), ("480P", "16:9"), ("1080p", "9:16"))
    ]
    for fields in bodies:
        body = {"model": spec.slug, "prompt": "p", **fields}
        try:
            request, _ = spec.limits.apply(normalise(body), spec.slug)
            spec.validate(request)
            accepted = True
        except InvalidRequest:
            accepted = False
        assert validator.is_valid(body) == accepted, body
