"""Building the long-lived parts from settings (shared by ``serve`` and ``worker``)."""

from __future__ import annotations

from dataclasses import dataclass

from vidgate.config import Settings
from vidgate.runs.catalog import (
    LOCAL_BACKENDS,
    Catalog,
    ModelSpec,
    generic_parameters,
    testcard_parameters,
)
from vidgate.storage.local import LocalStorage, load_or_create_secret
from vidgate.store.sql import SQLStore


@dataclass(frozen=True)
class Services:
    """The long-lived parts a process shares between the API and its worker."""

    settings: Settings
    store: SQLStore
    storage: LocalStorage
    catalog: Catalog


def build_catalog(settings: Settings) -> Catalog:
    models = {}
    for slug, config in settings.enabled_models().items():
        default_params = (
            testcard_parameters() if config.backend in LOCAL_BACKENDS else generic_parameters()
        )
        models[slug] = ModelSpec(
            slug=slug,
            backend=config.backend,
            name=config.name or slug,
            description=config.description,
            provider=config.provider_name,
            provider_model=config.provider_model,
            text_to_video=config.text_to_video,
            image_to_video=config.image_to_video,
            pricing=config.pricing,
            deadline_s=config.deadline_s,
            parameters=config.parameters if config.parameters is not None else default_params,
            options=dict(config.options),
        )
    return Catalog(models)


def build_storage(settings: Settings) -> LocalStorage:
    secret = load_or_create_secret(settings.data_dir / "secret.key")
    return LocalStorage(settings.storage_path, secret)
