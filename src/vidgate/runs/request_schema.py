"""The JSON Schema of a submit body, as ``/openapi.json`` publishes it. Pure: no I/O.

The schema is exact: a body it allows is accepted by :func:`vidgate.runs.submit.prepare_run`
and a body it refuses is answered ``400``, for the models of one catalog and its limits. It
is built from the same patterns :mod:`vidgate.runs.request` applies, one branch per model
(``oneOf``, told apart by ``model``) for what each model takes. Checks no schema can hold
are left out: the moderation policy (``CONTENT_POLICY_VIOLATION``) and, unless private
hosts are allowed, whether ``webhookUrl`` and ``imageUrl`` resolve to public addresses.
"""

from __future__ import annotations

import math
from re import fullmatch
from typing import Any

from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.request import (
    ASPECT_RATIOS,
    BASE64_CHAR,
    DATA_URL_PREFIX,
    DURATION_NUMBER,
    DURATION_PATTERN,
    HTTP_URL_PATTERN,
    IMAGE_KEYS,
    MAX_DURATION_S,
    NON_BLANK_PATTERN,
    RESOLUTION_FORMS,
    RESOLUTION_PATTERN,
    SEED_RANGE,
    WEBHOOK_URL_MAX_CHARS,
    WEBHOOK_URL_PATTERN,
    Limits,
)
from vidgate.runs.routing import MAX_NAMES, PREFERENCE_KEYS
from vidgate.runs.webhooks import ALL_EVENTS

Schema = dict[str, Any]
EMPTY: Schema = {"enum": [None, ""], "description": "null or empty: not given"}
_SPECIAL = set(".^$*+?()[]{}|\\/")
_NEVER = "(?!)"


def literal(text: str) -> str:
    """``text`` as a pattern that matches it literally (ECMA-262 and Python alike)."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def _same_length(low: str, high: str) -> str:
    """Digit strings of one length from ``low`` to ``high`` (inclusive)."""
    n = len(low)
    if low == high:
        return low
    if n == 1:
        return f"[{low}-{high}]"
    if low == "0" * n and high == "9" * n:
        return f"[0-9]{{{n}}}"
    if low[0] == high[0]:
        return low[0] + _same_length(low[1:], high[1:])
    parts = [low[0] + f"(?:{_same_length(low[1:], '9' * (n - 1))})"]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}][0-9]{{{n - 1}}}")
    parts.append(high[0] + f"(?:{_same_length('0' * (n - 1), high[1:])})")
    return "(?:" + "|".join(parts) + ")"


def integer_pattern(low: int, high: int | None) -> str:
    """Whole numbers from ``low`` to ``high`` (no bound: None) written without leading
    zeros; ``0 <= low``."""
    if high is not None and high < low:
        return _NEVER
    shortest = len(str(low))
    longest = shortest if high is None else len(str(high))
    parts = []
    for n in range(shortest, longest + 1):
        first = low if n == shortest else 10 ** (n - 1)
        last = high if high is not None and n == longest else 10**n - 1
        parts.append(_same_length(str(first), str(last)))
    if high is None:
        parts.append(f"[1-9][0-9]{{{shortest},}}")
    return "(?:" + "|".join(parts) + ")"


def _whole(bound: object) -> int | None:
    if isinstance(bound, int | float) and not isinstance(bound, bool) and math.isfinite(bound):
        return math.floor(bound) if float(bound).is_integer() else None
    return None


def duration_number_pattern(low: int | None, high: int | None) -> str:
    """The seconds a duration string may hold: more than 0, from ``low`` to ``high``."""
    least = max(low or 0, 0)
    parts = []
    if high is None:
        parts.append(integer_pattern(max(least, 1), None) + r"(?:\.[0-9]+)?")
    else:
        if max(least, 1) <= high - 1:
            parts.append(integer_pattern(max(least, 1), high - 1) + r"(?:\.[0-9]+)?")
        if high >= max(least, 1):
            parts.append(literal(str(high)) + r"(?:\.0+)?")
    if least == 0 and (high is None or high >= 1):
        parts.append(r"0\.[0-9]*[1-9][0-9]*")
    return "0*(?:" + "|".join(parts) + ")" if parts else _NEVER


def duration_schema(spec: ModelSpec | None) -> Schema:
    """A duration in seconds: a number, or a string like ``"5"`` or ``"5s"``; one of a
    model's allowed durations where it lists them (any, where it snaps to them)."""
    allowed, snap = (spec.limits.durations, spec.limits.snap) if spec is not None else ((), False)
    if allowed and not snap:
        digits = "0*(?:" + "|".join(literal(str(d)) for d in allowed) + r")(?:\.0+)?"
        text = {"type": "string", "pattern": DURATION_PATTERN.format(number=digits)}
        return {"anyOf": [{"type": "number", "enum": list(allowed)}, text]}
    if allowed:  # snapped: any duration becomes an allowed one
        spec = None
    bounds = (spec.parameters.get("duration") or {}) if spec is not None else {}
    low, high = bounds.get("min"), bounds.get("max")
    high = MAX_DURATION_S if high is None else min(high, MAX_DURATION_S)
    number: Schema = {"type": "number", "exclusiveMinimum": 0}
    if low is not None:
        number["minimum"] = low
    number["maximum"] = high
    whole_low, whole_high = _whole(low), _whole(high)
    if (low is None or whole_low is not None) and (high is None or whole_high is not None):
        digits = duration_number_pattern(whole_low, whole_high)
    else:  # a bound with a fraction: strings are checked against it by value only
        digits = DURATION_NUMBER
    text = {"type": "string", "pattern": DURATION_PATTERN.format(number=digits)}
    return {"anyOf": [number, text]}


def seed_schema() -> Schema:
    low, high = SEED_RANGE
    positive = integer_pattern(0, high)
    negative = integer_pattern(1, -low)
    return {
        "anyOf": [
            EMPTY,
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "pattern": rf"^\s*(?:-?0*{positive}|-0*{negative})\s*$"},
        ],
        "description": "a 64-bit integer, or a string of one",
    }


def data_url_pattern(max_bytes: int) -> str:
    """A base64 data URL of an image whose payload decodes to at most ``max_bytes``."""
    quad = f"(?:{BASE64_CHAR}{{4}})"
    tails = [f"{quad}{{0,{max_bytes // 3}}}"]
    if max_bytes >= 1:
        tails.append(f"{quad}{{0,{(max_bytes - 1) // 3}}}{BASE64_CHAR}{{2}}==")
    if max_bytes >= 2:
        tails.append(f"{quad}{{0,{(max_bytes - 2) // 3}}}{BASE64_CHAR}{{3}}=")
    return DATA_URL_PREFIX + "(?:" + "|".join(tails) + ")$"


def _plain(spec: ModelSpec, limits: Limits) -> dict[str, Schema]:
    """The fields whose rule is their own (each independent of the others)."""
    snap = spec.limits.snap  # a value outside the lists becomes the nearest one in them
    aspects = spec.parameters.get("aspect_ratio", {}).get("options") or ASPECT_RATIOS
    if snap and spec.limits.aspect_ratios:
        aspects = ASPECT_RATIOS
    resolution: Schema = {"type": "string", "pattern": RESOLUTION_PATTERN}
    options = spec.parameters.get("resolution", {}).get("options")
    if options and not (snap and spec.limits.resolutions):
        valid = [r for r in options if r == r.lower() and fullmatch(RESOLUTION_FORMS, r)]
        resolution = {"type": "string", "pattern": _one_of(valid)}
    return {
        "model": {"type": "string", "pattern": rf"^\s*{literal(spec.slug)}\s*$"},
        "negative_prompt": {"type": ["string", "null"], "maxLength": limits.prompt_max_chars},
        "aspect_ratio": {"enum": [None, *(a for a in aspects if a in ASPECT_RATIOS)]},
        "resolution": {"anyOf": [{"type": "null"}, resolution]},
        "seed": seed_schema(),
        "webhookUrl": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "string",
                    "pattern": WEBHOOK_URL_PATTERN,
                    "maxLength": WEBHOOK_URL_MAX_CHARS,
                },
            ],
            "description": "extension: POSTed on terminal status; a public host unless the "
            "server allows private ones",
        },
        "webhookEvents": {
            "anyOf": [{"type": "null"}, {"type": "array", "items": {"enum": sorted(ALL_EVENTS)}}],
            "description": "extension: events besides the terminal ones",
        },
        "provider": _provider_schema(spec),
    }


def _provider_schema(spec: ModelSpec) -> Schema:
    """The routing preferences a model takes (none where its configuration forbids them)."""
    if not spec.allow_provider_preferences:
        return {"type": "null", "description": "extension: this model takes no preferences"}
    names: Schema = {
        "type": "array",
        "maxItems": MAX_NAMES,
        "items": {"enum": [route.provider for route in spec.all_routes]},
    }
    return {
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {key: names for key in PREFERENCE_KEYS},
                # Some provider must be left: in 'only' (when given) and not in 'ignore'.
                "anyOf": [_left(route.provider) for route in spec.all_routes],
            },
        ],
        "description": "extension: which of the model's providers to try, in which order "
        "('order'), only ('only') or not ('ignore')",
    }


def _left(provider: str) -> Schema:
    """Preferences that leave ``provider`` to the run."""
    named: Schema = {"contains": {"const": provider}}
    return {
        "allOf": [
            {"anyOf": [{"not": {"required": ["only"]}}, {"properties": {"only": named}}]},
            {"not": {"required": ["ignore"], "properties": {"ignore": named}}},
        ]
    }


def _durations(spec: ModelSpec) -> list[Schema]:
    """``duration``, or when it is not given ``seconds`` (a Sora-style alias)."""
    value = duration_schema(spec)
    return [
        {"required": ["duration"], "properties": {"duration": value, "seconds": {}}},
        {"properties": {"duration": EMPTY, "seconds": {"anyOf": [EMPTY, value]}}},
    ]


def _contents(spec: ModelSpec, limits: Limits) -> list[Schema]:
    """What the run is made from: a prompt, an image, or either, as the model takes them.
    Each alternative names every one of these fields (generators need not merge them)."""
    data_url: Schema = {"type": "string", "pattern": data_url_pattern(limits.image_max_bytes)}
    http_url: Schema = {"type": "string", "pattern": HTTP_URL_PATTERN}
    images = {
        "imageDataUrl": data_url,
        "image_data_url": data_url,
        "image": {"anyOf": [data_url, http_url]},
        "imageUrl": http_url,
    }
    text: Schema = {"type": ["string", "null"], "maxLength": limits.prompt_max_chars}
    prompt: Schema = {
        "type": "string",
        "maxLength": limits.prompt_max_chars,
        "pattern": NON_BLANK_PATTERN,
    }
    alternatives = []
    if spec.image_to_video:
        for key in IMAGE_KEYS:
            properties = {
                k: images[k] if k == key else {"anyOf": [EMPTY, images[k]]} for k in IMAGE_KEYS
            }
            alternatives.append({"required": [key], "properties": {"prompt": text, **properties}})
    if spec.text_to_video:
        properties = {k: EMPTY for k in IMAGE_KEYS}
        alternatives.append(
            {"required": ["prompt"], "properties": {"prompt": prompt, **properties}}
        )
    return alternatives or [{"not": {}}]


def _one_of(words: list[str]) -> str:
    """A pattern for any of ``words``, letters in either case (as a value is lowered)."""
    cased = ["".join(f"[{c}{c.upper()}]" if c.isalpha() else literal(c) for c in w) for w in words]
    return rf"^\s*(?:{'|'.join(cased)})\s*$" if cased else _NEVER


def model_schema(spec: ModelSpec, limits: Limits) -> Schema:
    """A submit to one model: its fields, its durations, and what it is made from."""
    return {
        "title": spec.slug,
        "type": "object",
        "required": ["model"],
        "properties": _plain(spec, limits),
        "allOf": [{"anyOf": _durations(spec)}, {"anyOf": _contents(spec, limits)}],
    }


def submit_schema(catalog: Catalog, limits: Limits) -> Schema:
    """The body of ``POST /api/generate-video`` for ``catalog`` and ``limits``: one branch
    per model (``model`` is a slug from ``GET /api/v1/video-models``; ``image`` is an alias
    of ``imageDataUrl``, or of ``imageUrl`` when it holds an http(s) URL). Keys not listed
    are accepted and passed to the models that use them."""
    branches = [model_schema(spec, limits) for spec in catalog]
    return {"type": "object", "oneOf": branches or [{"not": {}}]}
