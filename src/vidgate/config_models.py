"""The ``[providers.NAME]`` and ``[models."SLUG"]`` sections: who makes the videos, and what
each model offers and costs (its routes are in :mod:`vidgate.config_routes`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, model_validator

from vidgate.backends.diffusers_options import DiffusersOptions
from vidgate.config_routes import ROUTE_KEYS, HealthFields, PriceFields, RouteConfig
from vidgate.config_sections import _Section
from vidgate.runs.catalog import (
    LOCAL_BACKENDS,
    REMOTE_BACKENDS,
    generic_parameters,
    testcard_parameters,
)
from vidgate.runs.limits import ModelLimits


class ProviderConfig(_Section):
    base_url: str
    api_key_env: str | None = None
    poll_interval_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    retry_ambiguous_submits: bool = False
    """Send a submit again when its outcome is unknown (a lost answer, a 502/504, a stop
    while submitting) although the provider honours no idempotency key: each such retry may
    pay for a second job. Off, such a run is failed with an explanation instead."""
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(PriceFields, HealthFields):
    backend: str | None = None
    """The backend of a model with one route; a model with ``routes`` names it per route."""
    provider_model: str | None = None
    provider: str | None = None
    """Which ``[providers.X]`` section a remote backend uses; defaults to ``backend``."""
    routes: list[RouteConfig] = Field(default_factory=list)
    """Several providers, tried in order at submit (``[[models."SLUG".routes]]``)."""
    fallback_on_content_policy: bool = False
    """Send a run to the next route when a provider refuses its prompt at submit for its
    content policy (another provider's policy may differ). Off: the run fails."""
    allow_provider_preferences: bool = True
    """Whether a request's ``provider`` object may order or restrict the routes."""
    name: str | None = None
    description: str = ""
    enabled: bool = True
    deadline_s: float = Field(3600, gt=0)
    """A remote run still unfinished this long after submit is failed with a clear error."""
    text_to_video: bool = True
    image_to_video: bool = False
    parameters: dict[str, dict[str, Any]] | None = None
    """Catalog parameter specs; omitted → the backend's defaults."""
    options: dict[str, Any] = Field(default_factory=dict)
    durations: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=list)
    aspect_ratios: list[str] = Field(default_factory=list)
    """The values the provider takes (empty: any): see :mod:`vidgate.runs.limits`."""
    snap_to_allowed: bool = False
    """Move a value outside them to the nearest allowed one instead of refusing it."""

    @property
    def limits(self) -> ModelLimits:
        return ModelLimits(
            tuple(self.durations),
            tuple(self.resolutions),
            tuple(self.aspect_ratios),
            snap=self.snap_to_allowed,
        )

    @model_validator(mode="after")
    def _one_form(self) -> ModelConfig:
        """A model has either the keys of one route at its top level, or ``routes``."""
        if self.routes:
            mixed = sorted(k for k in self.model_fields_set & ROUTE_KEYS if k != "routes")
            if mixed:
                raise ValueError(
                    f"{', '.join(mixed)} belong in each of [[routes]] when a model lists "
                    "routes; move them into the routes (or drop routes for a single provider)"
                )
        elif self.backend is None:
            raise ValueError(
                "a model needs a backend (one provider) or [[routes]] tables (several)"
            )
        return self

    @property
    def route_configs(self) -> list[RouteConfig]:
        """The model's routes in order (one for the single-provider form)."""
        if self.routes:
            return list(self.routes)
        keys = ROUTE_KEYS & set(type(self).model_fields)
        return [RouteConfig.model_validate({k: getattr(self, k) for k in keys})]

    @property
    def first_route(self) -> RouteConfig:
        return self.route_configs[0]

    @property
    def provider_name(self) -> str:
        """The ``[providers.X]`` section the model's first route uses."""
        return self.first_route.provider_name

    @property
    def catalog_parameters(self) -> dict[str, dict[str, Any]]:
        """The parameters the catalog shows: the section's own, else the backend's, within
        the model's limits."""
        return self.limits.restrict(self._own_or_backend_parameters())

    def _own_or_backend_parameters(self) -> dict[str, dict[str, Any]]:
        if self.parameters is not None:
            return self.parameters
        route = self.first_route
        if route.backend == "diffusers":
            return DiffusersOptions.model_validate(route.options).parameters()
        return testcard_parameters() if route.backend in LOCAL_BACKENDS else generic_parameters()

    @property
    def offered_resolutions(self) -> list[str]:
        """The resolutions the model offers (empty: not restricted)."""
        options = self.catalog_parameters.get("resolution", {}).get("options", [])
        return [str(o) for o in options]


def _default_models() -> dict[str, ModelConfig]:
    return {
        "testcard-video": ModelConfig(
            backend="testcard",
            name="Testcard (text to video)",
            description="Built-in CPU test pattern with the prompt rendered into each frame. "
            "Sandbox model: see the sandbox:* prompt switches.",
            options={"mode": "text"},
        ),
        "testcard-image-video": ModelConfig(
            backend="testcard",
            name="Testcard (image to video)",
            description="Built-in CPU renderer that animates the given image.",
            text_to_video=False,
            image_to_video=True,
            options={"mode": "image"},
        ),
    }


def _check_backend(where: str, route: RouteConfig, providers: Mapping[str, object]) -> None:
    known = LOCAL_BACKENDS | REMOTE_BACKENDS
    if route.backend not in known:
        close = difflib.get_close_matches(route.backend, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{where}.backend: unknown backend {route.backend!r}{hint}; known backends: "
            + ", ".join(sorted(known))
        )
    provider = route.provider_name
    if route.backend in REMOTE_BACKENDS and provider not in providers:
        raise ValueError(
            f"{where}: backend {route.backend!r} needs a [providers.{provider}] section "
            "with its base_url, and there is none (see the README's remote providers)"
        )
