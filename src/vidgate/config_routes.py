"""Typed settings of a model's routes: which provider makes its videos, at what price.

A model names its provider with the keys of one route (``backend``, ``provider``,
``provider_model``, prices, ``options``) or lists several routes, tried in order, as
``[[models."SLUG".routes]]`` tables (see the README's routing section). The settings here
hold no environment: :mod:`vidgate.config` reads it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from vidgate.runs.pricing import Pricing
from vidgate.runs.routing import Route


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceFields(_Section):
    """A route's price table (see :mod:`vidgate.runs.pricing`)."""

    price_usd: float = Field(0.0, ge=0)
    """Per video (fixed); the fallback of the tables below."""
    price_per_second_usd: float = Field(0.0, ge=0)
    price_by_resolution_usd: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Per video by resolution, e.g. ``{"480p" = 0.72, "1080p" = 1.8}``."""
    price_per_second_by_resolution_usd: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    price_by_duration_usd: dict[Annotated[int, Field(ge=1)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    """Per video by duration tier in seconds, e.g. ``{"5" = 0.5, "10" = 0.9}``: a run pays
    the smallest tier that holds its duration."""

    @property
    def pricing(self) -> Pricing:
        return Pricing(
            per_video_usd=self.price_usd,
            per_second_usd=self.price_per_second_usd,
            by_resolution_usd=dict(self.price_by_resolution_usd),
            per_second_by_resolution_usd=dict(self.price_per_second_by_resolution_usd),
            by_duration_usd=dict(self.price_by_duration_usd),
        )


class HealthFields(_Section):
    """A route's circuit breaker and concurrency limit."""

    max_in_flight: int | None = Field(None, ge=1)
    """Runs at most in flight on this route at once (submitted, not yet finished); a run
    past it goes to the next route, or waits. Unset: no limit."""
    breaker_failures: int = Field(5, ge=1)
    """Clear submit failures (refusals, no connection, a refused key) within
    ``breaker_window_s`` that open the route's circuit: it is skipped for
    ``breaker_cooldown_s``, then one probe run tries it again."""
    breaker_window_s: float = Field(60.0, gt=0)
    breaker_cooldown_s: float = Field(30.0, gt=0)


class RouteConfig(PriceFields, HealthFields):
    """One ``[[models."SLUG".routes]]`` table."""

    backend: str
    provider: str | None = None
    """Which ``[providers.X]`` section the route uses; defaults to ``backend``. Each route of
    a model names a different one."""
    provider_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def provider_name(self) -> str:
        return self.provider or self.backend

    def route(self) -> Route:
        return Route(
            provider=self.provider_name,
            backend=self.backend,
            provider_model=self.provider_model,
            pricing=self.pricing,
            options=dict(self.options),
            max_in_flight=self.max_in_flight,
            breaker_failures=self.breaker_failures,
            breaker_window_s=self.breaker_window_s,
            breaker_cooldown_s=self.breaker_cooldown_s,
        )


ROUTE_KEYS = frozenset(RouteConfig.model_fields)
"""The keys a model takes either at its top level (one route) or in each of its routes."""


def route_problems(slug: str, routes: list[RouteConfig], local: frozenset[str]) -> list[str]:
    """What is wrong with a model's list of routes (each route is checked on its own too)."""
    problems: list[str] = []
    seen: set[str] = set()
    for n, route in enumerate(routes):
        if route.provider_name in seen:
            problems.append(
                f"models.{slug}.routes[{n}]: provider {route.provider_name!r} is already a "
                "route of this model; give each route its own [providers.X] section (two "
                "sections may use the same backend with other keys or base URLs)"
            )
        seen.add(route.provider_name)
        if len(routes) > 1 and route.backend in local:
            problems.append(
                f"models.{slug}.routes[{n}]: backend {route.backend!r} renders on this "
                "machine and cannot be one of several routes; routes fall over between "
                "remote providers"
            )
    return problems
