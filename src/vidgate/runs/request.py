"""Normalising a submit body into a :class:`GenerationRequest`.

The upstream API is loose: ``duration`` may be ``"5"``, ``"5s"`` or ``5``; an image may come
as ``imageDataUrl``, ``image_data_url`` or ``image``; unknown keys are accepted and ignored.
This module turns all of that into one typed value, or raises :class:`InvalidRequest` with a
message a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vidgate.runs.errors import InvalidRequest
from vidgate.runs.webhooks import DEFAULT_EVENTS, parse_events

ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "auto")
IMAGE_DATA_URL_KEYS = ("imageDataUrl", "image_data_url", "image")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$", re.IGNORECASE)
_RESOLUTION_RE = re.compile(r"^(\d{3,4})p$|^(\d{3,4})x(\d{3,4})$|^[124]k$", re.IGNORECASE)
_DATA_URL_RE = re.compile(r"^data:(image/[a-z0-9.+-]+)?(;[a-z0-9=.+-]+)*;base64,", re.IGNORECASE)
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
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1))
    else:
        raise InvalidRequest(
            f'\'{key}\' must be a number of seconds like 5, "5" or "5s"; got {value!r:.40}',
            field=key,
        )
    if not seconds > 0:
        raise InvalidRequest(f"'{key}' must be more than 0 seconds", field=key)
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
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        seed = int(value.strip())
    else:
        raise InvalidRequest(f"'seed' must be an integer; got {value!r:.40}", field="seed")
    if not -(2**63) <= seed < 2**63:
        raise InvalidRequest("'seed' must fit in 64 bits", field="seed")
    return seed


def decoded_size(data_url: str) -> int:
    """Bytes the base64 payload of a data URL decodes to (without decoding it)."""
    payload = data_url.split(",", 1)[1]
    stripped = payload.rstrip("=")
    return len(stripped) * 3 // 4


def check_image_data_url(value: str, limits: Limits, key: str) -> None:
    if not _DATA_URL_RE.match(value):
        raise InvalidRequest(
            f"'{key}' must be a data URL like 'data:image/png;base64,...'", field=key
        )
    size = decoded_size(value)
    if size > limits.image_max_bytes:
        raise InvalidRequest(
            f"'{key}' decodes to {size} bytes; the limit is {limits.image_max_bytes} bytes. "
            "Host the image and send 'imageUrl' instead.",
            field=key,
        )
    payload = value.split(",", 1)[1]
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{key}' does not hold valid base64 data", field=key) from None


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
        resolution = resolution.strip().lower()
        if not _RESOLUTION_RE.match(resolution):
            raise InvalidRequest(
                f"'resolution' must look like 720p or 1280x720; got {resolution!r:.40}",
                field="resolution",
            )

    image_data_url = None
    for key in IMAGE_DATA_URL_KEYS:
        value = _string(body, key)
        if value:
            if key == "image" and not value.startswith("data:"):
                # Some clients send a plain URL in ``image``; treat it as ``imageUrl``.
                break
            check_image_data_url(value, limits, key)
            image_data_url = value
            break
    image_url = _string(body, "imageUrl")
    if image_url is None and image_data_url is None:
        plain = body.get("image")
        if isinstance(plain, str) and plain:
            image_url = plain
    if image_url is not None:
        image_url = image_url.strip()
        if not re.match(r"^https?://[^\s/]+", image_url, re.IGNORECASE):
            raise InvalidRequest("'imageUrl' must be an http(s) URL", field="imageUrl")

    webhook_url = _string(body, "webhookUrl")
    if webhook_url is not None and not re.match(r"^https?://[^\s/]+", webhook_url, re.I):
        raise InvalidRequest("'webhookUrl' must be an http(s) URL", field="webhookUrl")
    if webhook_url is not None and len(webhook_url) > 2000:
        raise InvalidRequest("'webhookUrl' is longer than 2000 characters", field="webhookUrl")
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
