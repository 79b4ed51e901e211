"""Building the long-lived parts from settings (shared by ``serve`` and ``worker``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidgate.config import Settings
from vidgate.metrics import Metrics
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.storage.base import Storage
from vidgate.storage.local import LocalStorage, load_or_create_secret
from vidgate.storage.location import S3Location
from vidgate.store.sql import SQLStore
from vidgate.worker.remote.breaker import RouteBreakers


@dataclass(frozen=True)
class Services:
    """The long-lived parts a process shares between the API and its worker."""

    settings: Settings
    store: SQLStore
    storage: Storage
    catalog: Catalog
    metrics: Metrics = field(default_factory=Metrics)
    """What the process counts (see :mod:`vidgate.metrics`)."""
    breakers: RouteBreakers | None = None
    """The circuits of the routes this process's worker submits to (its own: see
    :mod:`vidgate.worker.remote.breaker`); None: the worker makes its own."""


def build_catalog(settings: Settings) -> Catalog:
    models = {}
    for slug, config in settings.enabled_models().items():
        routes = tuple(route.route() for route in config.route_configs)
        first = routes[0]
        models[slug] = ModelSpec(
            slug=slug,
            backend=first.backend,
            name=config.name or slug,
            description=config.description,
            provider=first.provider,
            provider_model=first.provider_model,
            text_to_video=config.text_to_video,
            image_to_video=config.image_to_video,
            pricing=first.pricing,
            deadline_s=config.deadline_s,
            parameters=config.catalog_parameters,
            limits=config.limits,
            options=dict(first.options),
            routes=routes,
            fallback_on_content_policy=config.fallback_on_content_policy,
            allow_provider_preferences=config.allow_provider_preferences,
        )
    return Catalog(models)


def build_storage(settings: Settings) -> Storage:
    """The storage ``storage.url`` names: an S3 bucket, or a local directory whose URLs
    this server signs with the data directory's secret."""
    if isinstance(settings.storage.location, S3Location):
        from vidgate.storage.s3 import S3Storage  # obstore (~25 ms to import) only where used

        return S3Storage.from_settings(settings.storage)
    secret = load_or_create_secret(settings.data_dir / "secret.key")
    return LocalStorage(settings.storage_path, secret)
