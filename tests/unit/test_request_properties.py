"""Properties of request normalisation and of the submit schema ``/openapi.json`` publishes:
the schema allows exactly the bodies a submit accepts, and a normalised request normalises
to itself."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.errors import InvalidRequest
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import (
    ASPECT_RATIOS,
    DURATION_NUMBER,
    DURATION_PATTERN,
    GenerationRequest,
    Limits,
    normalise,
    parse_duration,
)
from vidgate.runs.request_schema import duration_number_pattern, integer_pattern, submit_schema
from vidgate.runs.submit import prepare_run

LIMITS = Limits(prompt_max_chars=12, image_max_bytes=7)
CATALOG = Catalog(
    {
        spec.slug: spec
        for spec in (
            ModelSpec(
                "text",
                "testcard",
                "Text",
                parameters=catalog_module.testcard_parameters(),
            ),
            ModelSpec(
                "image",
                "testcard",
                "Image",
                text_to_video=False,
                image_to_video=True,
                parameters=catalog_module.testcard_parameters(),
            ),
            ModelSpec(
                "both.v2",
                "fal",
                "Both",
                image_to_video=True,
                parameters={
                    **catalog_module.generic_parameters(),
                    "aspect_ratio": {"options": ["16:9", "1:1", "5:4"]},
                    "resolution": {"options": ["720p", "4k", "1280x720", "HD"]},
                },
            ),
            ModelSpec("free", "fal", "Free", parameters={"duration": {"min": 2}}),
        )
    }
)
VALIDATOR = Draft202012Validator(submit_schema(CATALOG, LIMITS))

spaces = st.sampled_from(["", " ", "\t", "\n", "\u00a0", "  "])


def padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, v, b: a + v + b, spaces, values, spaces)


digits = st.one_of(
    st.integers(-3, 75).map(str),
    st.decimals(0, 70, places=2).map(str),
    st.sampled_from(["0", "00", "020", "20.0", "20.00", "20.5", "0.5", "0.0", "60", "5.", ".5"]),
    st.sampled_from(["\u0665", "1e1", "Infinity", "x", "", "9" * 400]),
)
seconds_forms = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(-5, 80),
    st.floats(-1, 100),
    st.sampled_from([10**400, 1e308, 0.4]),
    padded(st.builds(lambda n, s: n + s, digits, st.sampled_from(["", "s", "S", "m", " s"]))),
)
seeds = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 5.0, 5.5, 1e30]),
    padded(
        st.builds(
            lambda sign, zeros, n: sign + zeros + n,
            st.sampled_from(["", "-", "+"]),
            st.sampled_from(["", "0", "000"]),
            st.sampled_from(["0", "42", str(2**63 - 1), str(2**63), "9" * 25, "1a", ""]),
        )
    ),
)
payloads = st.binary(max_size=9).map(lambda b: base64.b64encode(b).decode())
data_urls = st.builds(
    lambda head, payload, tail: head + payload + tail,
    st.sampled_from(
        ["data:image/png;base64,", "DATA:;base64,", "data:text/html;base64,", "data:image/png,"]
    ),
    st.one_of(payloads, st.sampled_from(["!!", "A===", "AAAAA", "AA="])),
    st.sampled_from(["", "", "\n", "=", " "]),
)
urls = padded(
    st.sampled_from(["http://a", "HTTPS://b.c/d.png", "ftp://x", "http://", "http:// x", "x"])
)
texts = st.one_of(st.none(), st.just(""), st.text(max_size=14), st.sampled_from([" \n", "a b"]))
resolutions = padded(
    st.sampled_from(["720p", "720P", "480p", "240p", "4k", "4K", "1280x720", "1280X720", "HD"])
    | st.text(max_size=6)
)
webhooks = st.sampled_from(["http://h", "https://h.example/x", "ftp://h", "", "http:// h"])
JUNK = {
    "model": st.one_of(padded(st.sampled_from([*sorted(CATALOG.models), "nope"])), st.none()),
    "prompt": texts,
    "negative_prompt": texts,
    "duration": seconds_forms,
    "seconds": seconds_forms,
    "aspect_ratio": st.sampled_from([None, "", "5:4", "2:1", *ASPECT_RATIOS]),
    "resolution": st.one_of(st.none(), resolutions, st.integers()),
    "seed": seeds,
    "imageDataUrl": st.one_of(st.none(), st.just(""), data_urls, urls),
    "image_data_url": st.one_of(st.none(), st.just(""), data_urls),
    "image": st.one_of(st.none(), st.just(""), data_urls, urls, st.integers()),
    "imageUrl": st.one_of(st.none(), st.just(""), urls, st.booleans()),
    "webhookUrl": st.one_of(st.none(), webhooks, st.just("http://" + "h" * 2000)),
    "webhookEvents": st.one_of(
        st.none(),
        st.just("video.progress"),
        st.lists(st.sampled_from(["video.progress", "video.started", "video.nope"])),
    ),
    "camera_fixed": st.booleans(),
}


def _options(spec: ModelSpec) -> dict[str, st.SearchStrategy[Any]]:
    """Values ``spec`` accepts for each optional field."""
    bounds = spec.parameters.get("duration", {})
    low, high = bounds.get("min", 1), min(bounds.get("max", 90), 90)
    seconds = st.one_of(
        st.integers(low, high),
        st.floats(low, high),
        padded(st.integers(low, high).map(lambda n: f"{n}{'s' if n % 2 else ''}")),
    )
    aspects = spec.parameters.get("aspect_ratio", {}).get("options") or ASPECT_RATIOS
    options = {
        "duration": seconds,
        "seconds": seconds,
        "negative_prompt": st.text(max_size=12),
        "aspect_ratio": st.sampled_from([a for a in aspects if a in ASPECT_RATIOS]),
        "seed": st.one_of(st.integers(-(2**63), 2**63 - 1), padded(st.integers().map(str))),
        "webhookUrl": st.just("https://h.example/x"),
        "webhookEvents": st.lists(st.sampled_from(["video.progress", "video.started"])),
    }
    resolutions = spec.parameters.get("resolution", {}).get("options")
    if resolutions:
        options["resolution"] = padded(st.sampled_from(resolutions).map(str.upper))
    return options


OPTIONS = {slug: _options(spec) for slug, spec in CATALOG.models.items()}
IMAGES = {
    key: (urls if key == "imageUrl" else data_urls).filter(
        lambda v, key=key: accepted({"model": "both.v2", key: v}) is not None
    )
    for key in ("imageDataUrl", "image_data_url", "image", "imageUrl")
}
prompts = st.text(min_size=1, max_size=12).filter(str.strip)


NAMES = {slug: padded(st.just(slug)) for slug in CATALOG.models}
OPTION_KEYS = {
    slug: st.lists(st.sampled_from(sorted(o)), unique=True) for slug, o in OPTIONS.items()
}
JUNK_KEYS = st.lists(st.sampled_from(sorted(JUNK)), max_size=2, unique=True)
SLUGS = st.sampled_from(sorted(CATALOG.models))
IMAGE_KEY = st.sampled_from(sorted(IMAGES))


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies a submit accepts, most of the time: a model and what it takes, and now and
    then a value from anywhere."""
    spec = CATALOG.models[draw(SLUGS)]
    body: dict[str, Any] = {"model": draw(NAMES[spec.slug])}
    if spec.text_to_video:
        body["prompt"] = draw(prompts)
    if spec.image_to_video and (not spec.text_to_video or draw(st.booleans())):
        key = draw(IMAGE_KEY)
        body[key] = draw(IMAGES[key])
    options = OPTIONS[spec.slug]
    for key in draw(OPTION_KEYS[spec.slug]):
        body[key] = draw(options[key])
    for key in draw(JUNK_KEYS):
        body[key] = draw(JUNK[key])
    return body


bodies = valid_bodies()


def accepted(body: object) -> GenerationRequest | None:
    try:
        prepare_run(
            body,
            api_key_id="k",
            catalog=CATALOG,
            limits=LIMITS,
            moderation=Moderation([], [], "blocked"),
            now=1.0,
        )
    except InvalidRequest:
        return None
    return normalise(body, LIMITS)


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_the_submit_schema_allows_exactly_what_a_submit_accepts(body: dict[str, Any]) -> None:
    valid = VALIDATOR.is_valid(body)
    if valid != (accepted(body) is not None):
        problems = [error.message[:200] for error in VALIDATOR.iter_errors(body)]
        raise AssertionError(f"schema says {valid} for {body!r}: {problems}")


@settings(max_examples=100, deadline=None)
@given(bodies)
def test_a_normalised_request_normalises_to_itself(body: dict[str, Any]) -> None:
    request = accepted(body)
    if request is None:
        return
    assert normalise(request.to_body(), LIMITS) == request
    # As a run stores it: through JSON and back.
    assert GenerationRequest.from_json(json.loads(json.dumps(request.to_json()))) == request


@settings(deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_integer_patterns_are_their_ranges(low: int, n: int) -> None:
    high = low + n // 2
    for number in {low, high, n, max(low - 1, 0), high + 1}:
        matched = re.fullmatch(integer_pattern(low, high), str(number)) is not None
        assert matched == (low <= number <= high), (low, high, number)
    assert re.fullmatch(integer_pattern(low, None), str(low + n)) is not None
    assert (re.fullmatch(integer_pattern(low, None), str(n)) is not None) == (n >= low)


@settings(deadline=None)
@given(st.integers(0, 130), st.integers(0, 130), st.one_of(digits, seconds_forms))
def test_duration_patterns_hold_exactly_the_seconds_in_their_range(
    low: int, span: int, value: object
) -> None:
    high = low + span
    text = value if isinstance(value, str) else str(value)
    written = re.search(DURATION_PATTERN.format(number=DURATION_NUMBER), text)
    seconds = float(written.group(1)) if written else None
    for bounds in ((low, high), (None, high), (low, None), (None, None)):
        pattern = DURATION_PATTERN.format(number=duration_number_pattern(*bounds))
        least, most = bounds[0] or 0, bounds[1] if bounds[1] is not None else float("inf")
        expected = seconds is not None and seconds > 0 and least <= seconds <= most
        assert (re.search(pattern, text) is not None) == expected, (bounds, text)


def test_a_duration_too_large_for_a_float_is_refused() -> None:
    for value in (10**400, "9" * 400, 1e300):
        with pytest.raises(InvalidRequest, match="at most 86400 seconds"):
            parse_duration(value)
