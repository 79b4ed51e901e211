"""Which providers may make a run's video, and in which order. Pure: no I/O.

A model has one or more routes, in the order its configuration lists them. A request may
ask for another order, or for some providers only, or to leave some out (its optional
``provider`` object, in the spirit of OpenRouter's); an API key may be restricted to some
providers. :func:`run_routes` combines the three into the providers a run may use, in the
order the worker tries them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidgate.runs.errors import InvalidRequest
from vidgate.runs.pricing import Pricing

PREFERENCE_KEYS = ("order", "only", "ignore")
MAX_NAMES = 32


@dataclass(frozen=True)
class Route:
    """One provider a model's videos can be made by."""

    provider: str
    """The ``[providers.X]`` section: the route's name, unique within its model."""
    backend: str
    provider_model: str | None = None
    pricing: Pricing = field(default_factory=Pricing)
    options: Mapping[str, Any] = field(default_factory=dict)
    max_in_flight: int | None = None
    breaker_failures: int = 5
    breaker_window_s: float = 60.0
    breaker_cooldown_s: float = 30.0


class ProviderNotAllowed(InvalidRequest):
    """The API key may not use the providers this request would need."""


def parse_preferences(value: object) -> dict[str, list[str]]:
    """The request's ``provider`` object, checked for shape: each key a list of names."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            "'provider' must be an object such as "
            '{"order": ["fal", "replicate"], "only": [...], "ignore": [...]}',
            field="provider",
        )
    unknown = sorted(str(key) for key in value if key not in PREFERENCE_KEYS)
    if unknown:
        raise InvalidRequest(
            f"'provider' has unknown key(s) {', '.join(map(repr, unknown))}; it takes "
            + ", ".join(repr(key) for key in PREFERENCE_KEYS),
            field="provider",
        )
    preferences: dict[str, list[str]] = {}
    for key, names in value.items():
        where = f"provider.{key}"
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise InvalidRequest(
                f"'{where}' must be a list of provider names (strings)", field=where
            )
        if len(names) > MAX_NAMES:
            raise InvalidRequest(f"'{where}' names more than {MAX_NAMES} providers", field=where)
        preferences[str(key)] = list(names)
    return preferences


def run_routes(
    slug: str,
    routes: Sequence[Route],
    preferences: Mapping[str, list[str]] | None,
    *,
    allowed: Sequence[str] | None = None,
    preferences_allowed: bool = True,
) -> tuple[str, ...]:
    """The providers a run of model ``slug`` may use, in the order they are tried.

    ``preferences``: the request's (see :func:`parse_preferences`); ``allowed``: the
    providers the API key may use (None: any); ``preferences_allowed``: the model's
    ``allow_provider_preferences``. Raises InvalidRequest (or ProviderNotAllowed) with a
    message that says what to change."""
    names = [route.provider for route in routes]
    if preferences:
        if not preferences_allowed:
            raise InvalidRequest(
                f"model {slug!r} does not take provider preferences (its configuration sets "
                "allow_provider_preferences = false); remove 'provider' from the request",
                field="provider",
            )
        for key, listed in preferences.items():
            strangers = [name for name in listed if name not in names]
            if strangers:
                raise InvalidRequest(
                    f"'provider.{key}' names {', '.join(map(repr, strangers))}, not a provider "
                    f"of model {slug!r}; its providers: {', '.join(names)}",
                    field=f"provider.{key}",
                )
        order = preferences.get("order", [])
        names = [n for n in order if n in names] + [n for n in names if n not in order]
        if "only" in preferences:
            names = [n for n in names if n in preferences["only"]]
        names = [n for n in names if n not in preferences.get("ignore", [])]
        if not names:
            raise InvalidRequest(
                f"the request's 'provider' preferences leave no provider of model {slug!r}; "
                f"its providers: {', '.join(route.provider for route in routes)}",
                field="provider",
            )
    if allowed is not None:
        kept = [n for n in names if n in allowed]
        if not kept:
            raise ProviderNotAllowed(
                f"this API key may use only the providers {', '.join(allowed) or '(none)'}, "
                f"and model {slug!r} would be made by {', '.join(names)}; ask for a model "
                "these providers serve, or for the key's providers to be widened",
                field="provider",
            )
        names = kept
    return tuple(names)


def encode_routes(chosen: Sequence[str], routes: Sequence[Route]) -> str | None:
    """The ``runs.routes`` column: None when the run may use every route in their order."""
    if list(chosen) == [route.provider for route in routes]:
        return None
    return ",".join(chosen)


def decode_routes(value: str | None, routes: Sequence[Route]) -> list[Route]:
    """The routes a run may use, in order (routes no longer configured are left out)."""
    if value is None:
        return list(routes)
    by_name = {route.provider: route for route in routes}
    return [by_name[name] for name in value.split(",") if name in by_name]
