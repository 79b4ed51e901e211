"""Per-model limits: the durations, resolutions and aspect ratios a model's provider takes.

A submit outside them is refused before any provider is asked (a provider would refuse it
after a paid round trip), or, where the model's config sets ``snap_to_allowed``, moved to
the nearest allowed value: the nearest duration (ties: the longer), the nearest resolution
by height, the nearest aspect ratio by its numeric ratio. The run keeps what was asked and
what was used. The catalog shows the same values (:meth:`ModelLimits.restrict`).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vidgate.runs.errors import InvalidRequest
from vidgate.runs.request import ASPECT_RATIOS, RESOLUTION_PATTERN, GenerationRequest

Adjusted = dict[str, dict[str, Any]]
"""What snapping changed: ``{"duration": {"requested": 5, "used": 6}}``."""

_RESOLUTION_RE = re.compile(RESOLUTION_PATTERN)
_K_HEIGHTS = {"1k": 1080, "2k": 1440, "4k": 2160}


def height(resolution: str) -> int:
    """The height a resolution names: ``720p`` → 720, ``1280x720`` → 720 (the shorter
    side, as ``720p`` names it for portrait video too), ``4k`` → 2160."""
    value = resolution.strip().lower()
    if value in _K_HEIGHTS:
        return _K_HEIGHTS[value]
    if "x" in value:
        width, tall = value.split("x", 1)
        return min(int(width), int(tall))
    return int(value.rstrip("p"))


def ratio(aspect_ratio: str) -> float | None:
    """``16:9`` → 1.78; None for ``auto``."""
    if ":" not in aspect_ratio:
        return None
    width, tall = aspect_ratio.split(":", 1)
    return int(width) / int(tall)


def nearest_duration(seconds: float, allowed: Sequence[int]) -> int:
    return min(allowed, key=lambda d: (abs(d - seconds), -d))


def nearest_resolution(resolution: str, allowed: Sequence[str]) -> str:
    wanted = height(resolution)
    return min(allowed, key=lambda r: (abs(height(r) - wanted), -height(r)))


def nearest_aspect_ratio(aspect_ratio: str, allowed: Sequence[str]) -> str:
    """By the distance of the ratios' logarithms (16:9 is as far from 1:1 as 9:16 is);
    ``auto`` (no ratio) goes to the first allowed one."""
    wanted = ratio(aspect_ratio)
    numeric = [a for a in allowed if ratio(a) is not None]
    if wanted is None or not numeric:
        return allowed[0]
    return min(numeric, key=lambda a: abs(math.log(ratio(a) or 1.0) - math.log(wanted)))


def _number(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


@dataclass(frozen=True)
class ModelLimits:
    """Empty tuples: not restricted."""

    durations: tuple[int, ...] = ()
    resolutions: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    snap: bool = False

    def apply(self, request: GenerationRequest, slug: str) -> tuple[GenerationRequest, Adjusted]:
        """The request within the limits and what was snapped (empty: nothing); raises
        InvalidRequest naming the allowed values when the model does not snap."""
        adjusted: Adjusted = {}
        changes: dict[str, Any] = {}
        seconds = request.duration_s
        if self.durations and seconds is not None and seconds not in self.durations:
            allowed = ", ".join(map(str, self.durations))
            if not self.snap:
                raise InvalidRequest(
                    f"'duration' must be one of {allowed} seconds for {slug!r}; "
                    f"got {_number(seconds)}",
                    field="duration",
                )
            used = nearest_duration(seconds, self.durations)
            adjusted["duration"] = {"requested": _number(seconds), "used": used}
            changes["duration_s"] = float(used)
        for key, value, options, nearest in (
            ("resolution", request.resolution, self.resolutions, nearest_resolution),
            ("aspect_ratio", request.aspect_ratio, self.aspect_ratios, nearest_aspect_ratio),
        ):
            if not options or value is None or value in options:
                continue
            if not self.snap:
                raise InvalidRequest(
                    f"'{key}' must be one of {', '.join(options)} for {slug!r}; got {value!r}",
                    field=key,
                )
            used_value = nearest(value, options)
            adjusted[key] = {"requested": value, "used": used_value}
            changes[key] = used_value
        return (dataclasses.replace(request, **changes) if changes else request), adjusted

    def restrict(self, parameters: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Catalog parameter specs narrowed to the limits: the allowed values as options
        (durations also as min and max) and a default among them (the nearest to the
        backend's default)."""
        result = {name: dict(spec) for name, spec in parameters.items()}
        if self.durations:
            spec = result.setdefault("duration", {"type": "integer"})
            default = spec.get("default")
            spec.update(
                options=list(self.durations),
                min=min(self.durations),
                max=max(self.durations),
                default=nearest_duration(default, self.durations)
                if isinstance(default, int | float)
                else self.durations[0],
            )
        for key, options, nearest in (
            ("resolution", self.resolutions, nearest_resolution),
            ("aspect_ratio", self.aspect_ratios, nearest_aspect_ratio),
        ):
            if not options:
                continue
            spec = result.setdefault(key, {"type": "select"})
            default = spec.get("default")
            if not isinstance(default, str):
                default = options[0]
            spec.update(
                options=list(options),
                default=default if default in options else nearest(default, options),
            )
        return result

    def problems(self, parameters: Mapping[str, dict[str, Any]] | None) -> list[str]:
        """What is wrong with these limits, and with a model's own ``parameters`` (when its
        config sets them) whose default the limits would not allow."""
        found = []
        if any(d < 1 for d in self.durations):
            found.append("durations must be whole seconds, 1 or more")
        for resolution in self.resolutions:
            if not _RESOLUTION_RE.search(resolution) or resolution != resolution.lower():
                found.append(f"resolutions: {resolution!r} is not like 720p or 1280x720")
        for aspect in self.aspect_ratios:
            if aspect not in ASPECT_RATIOS:
                found.append(f"aspect_ratios: {aspect!r} is not one of {', '.join(ASPECT_RATIOS)}")
        for key, allowed in (
            ("duration", self.durations),
            ("resolution", self.resolutions),
            ("aspect_ratio", self.aspect_ratios),
        ):
            default = (parameters or {}).get(key, {}).get("default")
            if allowed and default is not None and default not in allowed:
                found.append(
                    f"parameters.{key}.default is {default!r}, which the model's allowed "
                    f"values ({', '.join(map(str, allowed))}) leave out"
                )
        return found
