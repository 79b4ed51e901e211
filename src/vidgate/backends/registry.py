"""Which backend name maps to which implementation, built from settings."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping

import httpx

from vidgate.backends.base import LocalBackend, ProviderSettings, RemoteBackend
from vidgate.config import Settings
from vidgate.runs.catalog import LOCAL_BACKENDS, REMOTE_BACKENDS, Catalog


def local_backends(
    catalog: Catalog, models: Collection[str] | None = None
) -> dict[str, LocalBackend]:
    """The local backends ``catalog``'s models (or those of them named in ``models``) use.
    The diffusers backend checks its models' files at once (and logs those that are
    missing); it imports torch only when a run needs it."""
    served = [spec for spec in catalog if models is None or spec.slug in models]
    built: dict[str, LocalBackend] = {}
    if models is None or any(spec.backend == "testcard" for spec in served):
        from vidgate.backends.testcard import TestcardBackend

        built["testcard"] = TestcardBackend()
    diffusers = {spec.slug: spec.options for spec in served if spec.backend == "diffusers"}
    if diffusers:
        from vidgate.backends.diffusers import DiffusersBackend

        backend = DiffusersBackend()
        backend.check(diffusers)
        built["diffusers"] = backend
    return built


def provider_settings(
    settings: Settings, env: Mapping[str, str] | None = None
) -> dict[str, ProviderSettings]:
    """Each ``[providers.NAME]`` section, with its key read from the environment."""
    return {
        name: ProviderSettings(
            name=name,
            base_url=config.base_url,
            api_key=settings.provider_api_key(name, env),
            timeout_s=config.timeout_s,
            options=dict(config.options),
        )
        for name, config in settings.providers.items()
    }


def remote_backends(
    settings: Settings,
    http: httpx.AsyncClient,
    env: Mapping[str, str] | None = None,
    models: Collection[str] | None = None,
) -> dict[str, RemoteBackend]:
    """One adapter per provider section that a configured remote model (of ``models``, if
    given) uses, by provider."""
    resolved = provider_settings(settings, env)
    built: dict[str, RemoteBackend] = {}
    for slug, model in settings.enabled_models().items():
        if models is not None and slug not in models:
            continue
        for route in model.route_configs:
            if route.backend in LOCAL_BACKENDS:
                continue
            provider = route.provider_name
            if provider in built:
                continue
            if route.backend not in REMOTE_BACKENDS:  # refused when settings load
                known = ", ".join(sorted(REMOTE_BACKENDS | LOCAL_BACKENDS))
                raise ValueError(f"unknown backend {route.backend!r}; known backends: {known}")
            module = importlib.import_module(f"vidgate.backends.{route.backend}")
            built[provider] = module.build(http, resolved[provider])
    return built
