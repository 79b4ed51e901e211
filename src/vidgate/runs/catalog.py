"""The model catalog: which slugs exist, what they accept, what they cost."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vidgate.runs.errors import InvalidRequest, UnknownModel
from vidgate.runs.limits import ModelLimits
from vidgate.runs.pricing import Pricing
from vidgate.runs.request import ASPECT_RATIOS, GenerationRequest
from vidgate.runs.routing import Route

LOCAL_BACKENDS = frozenset({"testcard", "diffusers"})
"""Backends that render on this machine."""
REMOTE_BACKENDS = frozenset(
    {"fal", "replicate", "openai", "veo", "runway", "nanogpt", "openrouter"}
)
"""Remote provider adapters, each a module of :mod:`vidgate.backends` by this name."""
TESTCARD_RESOLUTIONS = ("240p", "360p", "480p", "540p", "720p", "1080p")
TESTCARD_DEFAULT_DURATION_S = 5
TESTCARD_MAX_DURATION_S = 20


def testcard_parameters() -> dict[str, dict[str, Any]]:
    return {
        "duration": {
            "type": "integer",
            "default": TESTCARD_DEFAULT_DURATION_S,
            "min": 1,
            "max": TESTCARD_MAX_DURATION_S,
            "description": "Length in seconds",
        },
        "aspect_ratio": {"type": "select", "default": "16:9", "options": list(ASPECT_RATIOS)},
        "resolution": {"type": "select", "default": "480p", "options": list(TESTCARD_RESOLUTIONS)},
        "seed": {
            "type": "integer",
            "default": 0,
            "description": "Same seed and parameters give a byte-identical file",
        },
    }


def generic_parameters() -> dict[str, dict[str, Any]]:
    return {
        "duration": {"type": "integer", "default": 5, "min": 1, "max": 60},
        "aspect_ratio": {"type": "select", "default": "16:9", "options": list(ASPECT_RATIOS)},
        "resolution": {
            "type": "select",
            "default": "720p",
            "options": ["480p", "540p", "720p", "1080p"],
        },
        "seed": {"type": "integer"},
        "negative_prompt": {"type": "string"},
    }


@dataclass(frozen=True)
class ModelSpec:
    slug: str
    backend: str
    name: str
    description: str = ""
    provider: str | None = None
    provider_model: str | None = None
    text_to_video: bool = True
    image_to_video: bool = False
    pricing: Pricing = field(default_factory=Pricing)
    deadline_s: float = 3600.0
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    """The providers that can make this model's videos, in order; empty: the one named by
    the fields above (``backend``, ``provider``... are always the first route's)."""
    fallback_on_content_policy: bool = False
    """Whether a provider's content-policy refusal at submit sends the run to the next route."""
    allow_provider_preferences: bool = True
    """Whether a request may order or restrict the routes (its ``provider`` object)."""
    limits: ModelLimits = field(default_factory=ModelLimits)
    """The values the provider takes; ``parameters`` already shows them."""

    @property
    def is_local(self) -> bool:
        return self.backend in LOCAL_BACKENDS

    @property
    def all_routes(self) -> tuple[Route, ...]:
        if self.routes:
            return self.routes
        return (
            Route(
                provider=self.provider or self.backend,
                backend=self.backend,
                provider_model=self.provider_model,
                pricing=self.pricing,
                options=self.options,
            ),
        )

    def on_route(self, route: Route) -> ModelSpec:
        """This model as made by ``route``: its backend, provider, model, price, options
        (made once per route of this model: every submit prices its routes; callers share
        it, so its ``options`` must not be changed)."""
        made = self._route_specs.get(route.provider)
        if made is not None and made[0] == route:
            return made[1]
        return self._made_on(route)

    @functools.cached_property
    def _route_specs(self) -> dict[str, tuple[Route, ModelSpec]]:
        """This model as made by each of its routes, by provider."""
        return {route.provider: (route, self._made_on(route)) for route in self.all_routes}

    def _made_on(self, route: Route) -> ModelSpec:
        return dataclasses.replace(
            self,
            backend=route.backend,
            provider=route.provider,
            provider_model=route.provider_model,
            pricing=route.pricing,
            options=dict(route.options),
        )

    def route_named(self, provider: str | None) -> Route | None:
        """The route of ``provider`` (None: the first); None if it is not a route here."""
        if provider is None:
            return self.all_routes[0]
        return next((r for r in self.all_routes if r.provider == provider), None)

    def estimate_cost(self, request: GenerationRequest) -> float:
        """The price of the run the request asks for (its duration and resolution, or the
        model's defaults)."""
        return self.cost(self.seconds_of(request), request)

    def cost(self, seconds: float, request: GenerationRequest) -> float:
        """The price of ``seconds`` of video made for ``request``."""
        resolution = request.resolution or self.parameters.get("resolution", {}).get("default")
        return self.pricing.cost(seconds, resolution)

    def seconds_of(self, request: GenerationRequest) -> float:
        """The seconds of video the request asks for."""
        return float(request.duration_s or self.default_duration_s)

    @property
    def default_duration_s(self) -> float:
        return float(self.parameters.get("duration", {}).get("default", 5))

    def validate(self, request: GenerationRequest) -> None:
        """Check a request against this model's parameters; raises InvalidRequest."""
        if not self.text_to_video and not request.has_image:
            raise InvalidRequest(
                f"model {self.slug!r} animates an image: send 'imageDataUrl' or 'imageUrl'",
                field="imageDataUrl",
            )
        if not self.image_to_video and request.has_image:
            raise InvalidRequest(
                f"model {self.slug!r} does not take an image; use an image-to-video model",
                field="imageDataUrl",
            )
        if self.text_to_video and not request.has_image and not (request.prompt or "").strip():
            raise InvalidRequest(f"'prompt' is required by model {self.slug!r}", field="prompt")
        duration = self.parameters.get("duration")
        if duration and request.duration_s is not None:
            low, high = duration.get("min"), duration.get("max")
            if (low is not None and request.duration_s < low) or (
                high is not None and request.duration_s > high
            ):
                raise InvalidRequest(
                    f"'duration' must be between {low} and {high} seconds for {self.slug!r}; "
                    f"got {_fmt(request.duration_s)}",
                    field="duration",
                )
        for key, value in (
            ("aspect_ratio", request.aspect_ratio),
            ("resolution", request.resolution),
        ):
            options = self.parameters.get(key, {}).get("options")
            if value is not None and options and value not in options:
                raise InvalidRequest(
                    f"'{key}' must be one of {', '.join(options)} for {self.slug!r}; got {value!r}",
                    field=key,
                )

    def to_json(self) -> dict[str, Any]:
        inputs = (["text"] if self.text_to_video else []) + (
            ["image"] if self.image_to_video else []
        )
        flat = flat_parameters(self.parameters)
        pricing = self.pricing.to_json(flat["resolutions"])
        return {
            "id": self.slug,
            "object": "model",
            "name": self.name,
            "description": self.description,
            "architecture": {
                "modality": "video",
                "input_modalities": inputs,
                "output_modalities": ["video"],
            },
            "pricing": pricing,
            "capabilities": {
                "video_generation": True,
                "text_to_video": self.text_to_video,
                "image_to_video": self.image_to_video,
                "audio_generation": False,
            },
            "supported_parameters": {
                **flat,
                "parameters": self.parameters,
                "defaults": {k: v["default"] for k, v in self.parameters.items() if "default" in v},
            },
        }


def flat_parameters(parameters: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """The flat lists clients read beside the nested specs: ``resolutions`` and
    ``aspect_ratios`` (strings), ``durations`` (whole seconds: the allowed list, else every
    one from the duration's min to its max; empty when neither is known)."""
    duration = parameters.get("duration", {})
    durations = [int(d) for d in duration.get("options", [])]
    low, high = duration.get("min"), duration.get("max")
    if not durations and isinstance(low, int | float) and isinstance(high, int | float):
        durations = list(range(math.ceil(low), math.floor(high) + 1))
    return {
        "resolutions": [str(o) for o in parameters.get("resolution", {}).get("options", [])],
        "durations": durations,
        "aspect_ratios": [str(o) for o in parameters.get("aspect_ratio", {}).get("options", [])],
    }


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if math.isclose(seconds, round(seconds)) else str(seconds)


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]

    def get(self, slug: str) -> ModelSpec:
        try:
            return self.models[slug]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModel(
                f"unknown model {slug!r}; models served here: {known}", field="model"
            ) from None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())
