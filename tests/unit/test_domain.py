"""Pure domain logic: statuses, ids, request normalisation, sandbox switches, catalog."""

from __future__ import annotations

import base64

import pytest

from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.errors import ContentPolicyViolation, InvalidRequest, UnknownModel
from vidgate.runs.ids import is_run_id, new_run_id
from vidgate.runs.moderation import Moderation
from vidgate.runs.pricing import Pricing
from vidgate.runs.request import GenerationRequest, Limits, normalise, parse_duration
from vidgate.runs.sandbox import parse_sandbox
from vidgate.runs.status import TERMINAL, Status, can_transition, sources_of


def test_statuses_are_the_upstream_wire_strings() -> None:
    assert [s.value for s in Status] == [
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    assert {s.flat for s in Status} == {"queued", "processing", "completed", "failed", "cancelled"}


@pytest.mark.parametrize(
    ("current", "allowed"),
    [
        (Status.IN_QUEUE, {Status.IN_PROGRESS, Status.CANCELLED, Status.FAILED}),
        (Status.IN_PROGRESS, {Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
        (Status.COMPLETED, set()),
        (Status.FAILED, set()),
        (Status.CANCELLED, set()),
    ],
)
def test_transition_table(current: Status, allowed: set[Status]) -> None:
    assert {s for s in Status if can_transition(current, s)} == allowed
    assert current.is_terminal == (current in TERMINAL) == (not allowed)


def test_sources_of_is_the_inverse_of_the_table() -> None:
    assert sources_of(Status.CANCELLED) == {Status.IN_QUEUE, Status.IN_PROGRESS}
    assert sources_of(Status.COMPLETED) == {Status.IN_PROGRESS}
    assert sources_of(Status.IN_QUEUE) == set()


def test_run_ids_are_well_formed_unique_and_time_ordered() -> None:
    ids = [new_run_id(1_700_000_000_000 + i) for i in range(200)]
    assert all(is_run_id(i) and len(i) == 30 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert not is_run_id("vid_" + "u" * 26)  # 'u' is not in the alphabet
    assert not is_run_id("run_" + "0" * 26)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("5s", 5.0),
        (5, 5.0),
        ("5.5s", 5.5),
        (" 8 S ", 8.0),
        (None, None),
        ("", None),
    ],
)
def test_duration_forms(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["five", "5m", True, [], {}, 0, "-1", -2])
def test_bad_durations(value: object) -> None:
    with pytest.raises(InvalidRequest, match="duration"):
        parse_duration(value)


def test_normalise_aliases_and_unknown_keys() -> None:
    png = "data:image/png;base64," + base64.b64encode(b"png-bytes").decode()
    for alias in ("imageDataUrl", "image_data_url", "image"):
        request = normalise({"model": "m", alias: png})
        assert request.image_data_url == png and request.image_url is None
    plain = normalise({"model": "m", "image": "https://example.com/a.png"})
    assert plain.image_url == "https://example.com/a.png"
    request = normalise(
        {
            "model": " m ",
            "prompt": "p",
            "seconds": "4",
            "seed": "42",
            "resolution": "720P",
            "camera_fixed": True,
            "whatever": [1],
        }
    )
    assert (request.model, request.duration_s, request.seed, request.resolution) == (
        "m",
        4.0,
        42,
        "720p",
    )
    assert request.extra == {"camera_fixed": True, "whatever": [1]}
    assert GenerationRequest.from_json(request.to_json()) == request


def test_normalise_limits() -> None:
    limits = Limits(prompt_max_chars=10, image_max_bytes=8)
    with pytest.raises(InvalidRequest, match="limit is 10"):
        normalise({"model": "m", "prompt": "x" * 11}, limits)
    big = "data:image/png;base64," + base64.b64encode(b"123456789").decode()
    with pytest.raises(InvalidRequest, match="limit is 8 bytes"):
        normalise({"model": "m", "imageDataUrl": big}, limits)


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        normalise(body)


def test_sandbox_switches() -> None:
    text, switches = parse_sandbox("A fox sandbox:slow=5 jumps SANDBOX:FAIL sandbox:queue=3s")
    assert text == "A fox jumps"
    assert switches.fail and not switches.nsfw and switches.slow_s == 5 and switches.queue_s == 3
    assert parse_sandbox("sandbox:slow=99999")[1].slow_s == 600
    assert parse_sandbox("sandbox:unknown stays")[0] == "sandbox:unknown stays"
    assert parse_sandbox(None) == ("", parse_sandbox("")[1])


def test_catalog_validation_and_cost() -> None:
    spec = ModelSpec(
        slug="t",
        backend="testcard",
        name="T",
        parameters=catalog_module.testcard_parameters(),
        pricing=Pricing(per_video_usd=0.1, per_second_usd=0.05),
    )
    catalog = Catalog({"t": spec})
    with pytest.raises(UnknownModel, match="models served here: t"):
        catalog.get("nope")
    with pytest.raises(InvalidRequest, match="between 1 and 20"):
        spec.validate(normalise({"model": "t", "prompt": "p", "duration": 21}))
    with pytest.raises(InvalidRequest, match="resolution"):
        spec.validate(normalise({"model": "t", "prompt": "p", "resolution": "2k"}))
    assert spec.estimate_cost(normalise({"model": "t", "duration": 4})) == pytest.approx(0.3)
    assert spec.estimate_cost(normalise({"model": "t"})) == pytest.approx(0.35)  # default 5 s


def test_moderation() -> None:
    policy = Moderation(["bad"], [r"wea+pon"], "blocked")
    policy.check(normalise({"model": "m", "prompt": "badger is fine"}))
    for prompt in ("so BAD", "a weaaapon"):
        with pytest.raises(ContentPolicyViolation, match="blocked"):
            policy.check(normalise({"model": "m", "prompt": prompt}))
    with pytest.raises(ContentPolicyViolation):
        policy.check(normalise({"model": "m", "prompt": "ok", "negative_prompt": "bad"}))
    Moderation([], [], "x").check(normalise({"model": "m", "prompt": "anything"}))
