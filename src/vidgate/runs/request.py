"""Normalising a submit body into a :class:`GenerationRequest`.

The upstream API is loose: ``duration`` may be ``"5"``, ``"5s"`` or ``5``; an image may come
as ``imageDataUrl``, ``image_data_url`` or ``image``; unknown keys are accepted and ignored.
This module turns all of that into one typed value, or raises :class:`InvalidRequest` with a
message a person can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vidgate.runs.errors import InvalidRequest
from vidgate.runs.webhooks import DEFAULT_EVENTS, parse_events

ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "auto")
IMAGE_DATA_URL_KEYS = ("imageDataUrl", "image_data_url", "image")
IMAGE_KEYS = (*IMAGE_DATA_URL_KEYS, "imageUrl")
WEBHOOK_URL_MAX_CHARS = 2000
SEED_RANGE = (-(2**63), 2**63 - 1)
MAX_DURATION_S = 86_400
"""No model takes a run longer than a day, whatever its parameters say."""

# The patterns below are also the published JSON Schema of a submit (see
# :mod:`vidgate.runs.request_schema`): each is applied here as JSON Schema applies a
# pattern (``re.search``), so what the schema allows and what is accepted are one set.
# Letters are matched by explicit classes, not flags, and digits as [0-9].
DURATION_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
DURATION_PATTERN = r"^\s*({number})\s*[sS]?\s*$"
SEED_PATTERN = r"^\s*(-?)0*([0-9]+)\s*$"
RESOLUTION_FORMS = r"[0-9]{3,4}[pP]|[0-9]{3,4}[xX][0-9]{3,4}|[124][kK]"
RESOLUTION_PATTERN = rf"^\s*({RESOLUTION_FORMS})\s*$"
HTTP_URL_PATTERN = r"^\s*[hH][tT][tT][pP][sS]?://[^\s/]"
WEBHOOK_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^\s/]"
DATA_URL_PREFIX = (
    r"^[dD][aA][tT][aA]:(?:[iI][mM][aA][gG][eE]/[a-zA-Z0-9.+-]+)?(?:;[a-zA-Z0-9=.+-]+)*"
    r";[bB][aA][sS][eE]64,"
)
BASE64_CHAR = "[A-Za-z0-9+/]"
BASE64_PATTERN = rf"^(?:{BASE64_CHAR}{{4}})*(?:{BASE64_CHAR}{{2}}==|{BASE64_CHAR}{{3}}=)?$"
NON_BLANK_PATTERN = r"\S"

_DURATION_RE = re.compile(DURATION_PATTERN.format(number=DURATION_NUMBER))
_SEED_RE = re.compile(SEED_PATTERN)
_RESOLUTION_RE = re.compile(RESOLUTION_PATTERN)
_HTTP_URL_RE = re.compile(HTTP_URL_PATTERN)
_WEBHOOK_URL_RE = re.compile(WEBHOOK_URL_PATTERN)
_DATA_URL_RE = re.compile(DATA_URL_PREFIX)
_BASE64_RE = re.compile(BASE64_PATTERN)
# Keys this module interprets; every other key is kept in ``extra`` for backends that want it.
_KNOWN = {
    "model",
    "prompt",
    "negative_prompt",
    "duration",
    "seconds",
    "aspect_ratio",
    "resolution",
    "seed",
    "imageUrl",
    "webhookUrl",
    "webhookEvents",
    "provider",  # routing preferences: see vidgate.runs.routing
    *IMAGE_DATA_URL_KEYS,
}


@dataclass(frozen=True)
class Limits:
    prompt_max_chars: int = 4000
    image_max_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class GenerationRequest:
    """A submit body, normalised. ``extra`` holds the keys vidgate does not interpret."""

    model: str
    prompt: str | None = None
    negative_prompt: str | None = None
    duration_s: float | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    image_data_url: str | None = None
    image_url: str | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = tuple(sorted(DEFAULT_EVENTS))
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "duration_s": self.duration_s,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "seed": self.seed,
            "image_data_url": self.image_data_url,
            "image_url": self.image_url,
            "webhook_url": self.webhook_url,
            "webhook_events": list(self.webhook_events),
            "extra": self.extra,
        }

    def to_body(self) -> dict[str, Any]:
        """The request as a submit body in the canonical spelling of each field (``duration``
        in seconds, ``imageDataUrl``, only the optional webhook events); normalising it
        gives this request back."""
        body: dict[str, Any] = {**self.extra, "model": self.model}
        for key, value in (
            ("prompt", self.prompt),
            ("negative_prompt", self.negative_prompt),
            ("duration", self.duration_s),
            ("aspect_ratio", self.aspect_ratio),
            ("resolution", self.resolution),
            ("seed", self.seed),
            ("imageDataUrl", self.image_data_url),
            ("imageUrl", self.image_url),
            ("webhookUrl", self.webhook_url),
        ):
            if value is not None:
                body[key] = value
        optional = sorted(set(self.webhook_events) - DEFAULT_EVENTS)
        if optional:
            body["webhookEvents"] = optional
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerationRequest:
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__ if k != "extra"}
        values["webhook_events"] = tuple(data.get("webhook_events") or sorted(DEFAULT_EVENTS))
        return cls(**values, extra=dict(data.get("extra") or {}))

    @property
    def has_image(self) -> bool:
        return bool(self.image_data_url or self.image_url)


def _string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string, got {_type_name(value)}", field=key)
    return value


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


def parse_duration(value: object, key: str = "duration") -> float | None:
    """``"5"``, ``"5s"``, ``5`` and ``5.0`` all mean five seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be a number of seconds like 5 or \"5s\"", field=key)
    seconds: float | None = None
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.search(value)):
            seconds = float(m.group(1))
    except OverflowError:
        seconds = math.inf
    if seconds is None:
        raise InvalidRequest(
            f'\'{key}\' must be a number of seconds like 5, "5" or "5s"; got {value!r:.40}',
            field=key,
        )
    if not seconds > 0:
        raise InvalidRequest(f"'{key}' must be more than 0 seconds", field=key)
    if seconds > MAX_DURATION_S:
        raise InvalidRequest(
            f"'{key}' must be at most {MAX_DURATION_S} seconds (a day); got {value!r:.40}",
            field=key,
        )
    return seconds


def parse_seed(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRequest("'seed' must be an integer", field="seed")
    if isinstance(value, int):
        seed = value
    elif isinstance(value, float) and value.is_integer():
        seed = int(value)
    elif isinstance(value, str) and (m := _SEED_RE.search(value)):
        sign, digits = m.groups()
        # More digits than 64 bits hold are out of range without converting them.
        seed = int(sign + digits) if len(digits) <= 19 else SEED_RANGE[1] + 1
    else:
        raise InvalidRequest(f"'seed' must be an integer; got {value!r:.40}", field="seed")
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise InvalidRequest("'seed' must fit in 64 bits", field="seed")
    return seed


def decoded_size(payload: str) -> int:
    """Bytes a valid base64 payload decodes to (without decoding it)."""
    return len(payload.rstrip("=")) * 3 // 4


def check_image_data_url(value: str, limits: Limits, key: str) -> None:
    if not _DATA_URL_RE.search(value):
        raise InvalidRequest(
            f"'{key}' must be a data URL like 'data:image/png;base64,...'", field=key
        )
    payload = _BASE64_RE.search(value.split(",", 1)[1])
    if payload is None:
        raise InvalidRequest(f"'{key}' does not hold valid base64 data", field=key)
    size = decoded_size(payload.group())
    if size > limits.image_max_bytes:
        raise InvalidRequest(
            f"'{key}' decodes to {size} bytes; the limit is {limits.image_max_bytes} bytes. "
            "Host the image and send 'imageUrl' instead.",
            field=key,
        )


def _images(body: Mapping[str, Any], limits: Limits) -> tuple[str | None, str | None]:
    """``(image_data_url, image_url)``. Every image key that is set (not null, not empty)
    must be valid; ``image`` holds either a data URL or an http(s) URL. The first data URL
    (in the order of :data:`IMAGE_DATA_URL_KEYS`) and ``imageUrl`` before ``image`` win."""
    data_url = url = None
    for key in IMAGE_KEYS:  # imageUrl comes last
        value = _string(body, key)
        if not value:
            continue
        if key == "imageUrl" or (key == "image" and not _DATA_URL_RE.search(value)):
            if not _HTTP_URL_RE.search(value):
                hint = "a data URL or an http(s) URL" if key == "image" else "an http(s) URL"
                raise InvalidRequest(f"'{key}' must be {hint}", field=key)
            url = value.strip() if key == "imageUrl" or url is None else url
        else:
            check_image_data_url(value, limits, key)
            data_url = data_url or value
    return data_url, url


def normalise(body: object, limits: Limits | None = None) -> GenerationRequest:
    """Turn a parsed JSON submit body into a :class:`GenerationRequest`."""
    limits = limits or Limits()
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"the request body must be a JSON object, got {_type_name(body)}")
    model = _string(body, "model")
    if not model or not model.strip():
        raise InvalidRequest("'model' is required (see GET /api/v1/video-models)", field="model")

    prompt = _string(body, "prompt")
    if prompt is not None and len(prompt) > limits.prompt_max_chars:
        raise InvalidRequest(
            f"'prompt' is {len(prompt)} characters; the limit is {limits.prompt_max_chars}",
            field="prompt",
        )
    negative = _string(body, "negative_prompt")
    if negative is not None and len(negative) > limits.prompt_max_chars:
        raise InvalidRequest(
            f"'negative_prompt' is {len(negative)} characters; the limit is "
            f"{limits.prompt_max_chars}",
            field="negative_prompt",
        )

    duration = parse_duration(body.get("duration"))
    if duration is None:
        duration = parse_duration(body.get("seconds"), "seconds")

    aspect = _string(body, "aspect_ratio")
    if aspect is not None and aspect not in ASPECT_RATIOS:
        raise InvalidRequest(
            f"'aspect_ratio' must be one of {', '.join(ASPECT_RATIOS)}; got {aspect!r:.40}",
            field="aspect_ratio",
        )
    resolution = _string(body, "resolution")
    if resolution is not None:
        if not (m := _RESOLUTION_RE.search(resolution)):
            raise InvalidRequest(
                f"'resolution' must look like 720p or 1280x720; got {resolution!r:.40}",
                field="resolution",
            )
        resolution = m.group(1).lower()

    image_data_url, image_url = _images(body, limits)
    webhook_url = _string(body, "webhookUrl")
    if webhook_url is not None and not _WEBHOOK_URL_RE.search(webhook_url):
        raise InvalidRequest("'webhookUrl' must be an http(s) URL", field="webhookUrl")
    if webhook_url is not None and len(webhook_url) > WEBHOOK_URL_MAX_CHARS:
        raise InvalidRequest(
            f"'webhookUrl' is longer than {WEBHOOK_URL_MAX_CHARS} characters", field="webhookUrl"
        )
    webhook_events = parse_events(body.get("webhookEvents"))

    extra = {k: v for k, v in body.items() if k not in _KNOWN}
    return GenerationRequest(
        model=model.strip(),
        prompt=prompt,
        negative_prompt=negative,
        duration_s=duration,
        aspect_ratio=aspect,
        resolution=resolution,
        seed=parse_seed(body.get("seed")),
        image_data_url=image_data_url,
        image_url=image_url,
        webhook_url=webhook_url,
        webhook_events=tuple(sorted(webhook_events)),
        extra=extra,
    )
