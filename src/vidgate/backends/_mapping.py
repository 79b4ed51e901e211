"""The request and answer mapping the generic adapters (fal, Replicate, OpenAI, NanoGPT)
share: model inputs from a request and the model's options, durations in the form a model
wants, progress numbers, and failures worded for people."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vidgate.backends.base import FAILED_FRIENDLY, NSFW_FRIENDLY, GenerationFailed, ProviderUpdate
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status


def format_duration(seconds: float | None, style: object) -> str | int | float | None:
    """A duration as a model wants it: ``"string"`` (``"5"``), ``"number"`` (5), ``"seconds"``
    (``"5s"``)."""
    if seconds is None:
        return None
    number: int | float = int(seconds) if float(seconds).is_integer() else seconds
    if style == "number":
        return number
    if style == "seconds":
        return f"{number}s"
    if style == "string":
        return str(number)
    raise GenerationFailed(
        f"model option duration_format must be string, number or seconds; got {style!r}",
        user_friendly=FAILED_FRIENDLY,
    )


def options_table(options: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A table-valued model option (``{}`` when unset); anything else fails the run."""
    value = options.get(key) or {}
    if not isinstance(value, Mapping):
        raise GenerationFailed(
            f"model option {key!r} must be a table, got {type(value).__name__}",
            user_friendly=FAILED_FRIENDLY,
        )
    return value


def renamed_input(
    request: GenerationRequest,
    options: Mapping[str, Any],
    *,
    image_field: str,
    duration_format: str,
) -> dict[str, Any]:
    """A model input: our fields under ``options.rename``'s names (``""`` drops one), then
    ``extra``, then ``options.input``, so the operator's fixed values win."""
    rename = options_table(options, "rename")
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration": format_duration(
            request.duration_s, options.get("duration_format", duration_format)
        ),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "seed": request.seed,
        image_field: request.image_url or request.image_data_url,
    }
    body: dict[str, Any] = {}
    for field, value in fields.items():
        target = rename.get(field, field)
        if value is not None and target:
            body[str(target)] = value
    body.update(request.extra)
    body.update(options_table(options, "input"))
    return body


def rejection_friendly(status: int, reason: str, *, nsfw: bool) -> str:
    """What to tell people when a provider refuses a request: the reason if it is about
    the input (400/422), a content-policy note, or the generic message."""
    if nsfw:
        return NSFW_FRIENDLY
    if status in (400, 422) and reason:
        return f"The provider rejected the request: {reason}"
    return FAILED_FRIENDLY


def failed_update(provider_status: str, error: str, *, nsfw: bool = False) -> ProviderUpdate:
    """A FAILED update with the matching user-facing message."""
    return ProviderUpdate(
        Status.FAILED,
        provider_status,
        error=error,
        is_nsfw=nsfw,
        user_friendly_error=NSFW_FRIENDLY if nsfw else FAILED_FRIENDLY,
    )


def percent(value: object, *, scale: float = 1.0) -> float | None:
    """A progress number times ``scale``, clamped to 0-100; ``None`` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(100.0, max(0.0, float(value) * scale))


def str_or(value: object, default: str) -> str:
    """``value`` if it is a non-empty string, else ``default``."""
    return value if isinstance(value, str) and value else default
