"""Typed settings. The only module that reads the environment.

Settings come from, in order of precedence: command-line flags, environment variables
(``VIDGATE_DATA_DIR``, ``VIDGATE_CONFIG``, ``VIDGATE_DATABASE_URL``,
``VIDGATE_STORAGE_URL``), the TOML config file, and the defaults below; the standard
``AWS_*`` variables fill the S3 keys of ``[storage]`` that the file leaves unset. Every key
is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vidgate.backends.diffusers_options import diffusers_problem
from vidgate.config_models import ModelConfig, ProviderConfig, _check_backend, _default_models
from vidgate.config_retention import RetentionSettings
from vidgate.config_routes import route_problems
from vidgate.config_sections import (
    AWS_VARIABLES,
    LimitSettings,
    MetricsSettings,
    ModerationSettings,
    ServerSettings,
    StorageSettings,
    UiSettings,
    WebhookSettings,
    WorkerSettings,
    _Section,
)
from vidgate.runs.catalog import (
    LOCAL_BACKENDS,
)

DEFAULT_DATA_DIR = Path(".vidgate")
Durability = Literal["normal", "full"]
"""How hard a commit is pushed to disk before it is acknowledged (see the README)."""


__all__ = [
    "AWS_VARIABLES",
    "DEFAULT_DATA_DIR",
    "ConfigError",
    "Durability",
    "LimitSettings",
    "MetricsSettings",
    "ModelConfig",
    "ModerationSettings",
    "ProviderConfig",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "UiSettings",
    "WebhookSettings",
    "WorkerSettings",
    "load_settings",
]


class ConfigError(Exception):
    """The configuration is not valid."""


class Settings(_Section):
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///DATA_DIR/vidgate.db``."""
    database_busy_timeout_s: float = Field(30, gt=0)
    """SQLite: how long a statement waits while another process holds the database's
    lock; then the request gets ``503`` (a worker writes again later)."""
    durability: Durability = "normal"
    """``normal``: a commit survives any crash of vidgate's processes; ``full``: it also
    survives a power loss or an OS crash (SQLite syncs its log at every commit; PostgreSQL
    sessions use ``synchronous_commit = on``)."""
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    moderation: ModerationSettings = Field(default_factory=ModerationSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    models: dict[str, ModelConfig] = Field(default_factory=_default_models)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _merge_default_models(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        merged: dict[str, Any] = dict(_default_models())
        merged.update(value)
        return merged

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        """What one section cannot check alone: each is found at start, not when a worker
        first needs it (a worker that dies at start leaves an API accepting runs no one
        runs)."""
        worker = self.worker
        if worker.heartbeat_s >= worker.lease_s:
            raise ValueError(
                f"worker.heartbeat_s ({worker.heartbeat_s:g}) must be below worker.lease_s "
                f"({worker.lease_s:g}): leases would expire between renewals and runs would be "
                "taken from working workers; a third of lease_s or less is a good heartbeat"
            )
        for slug, model in self.models.items():
            routes = model.route_configs
            for problem in route_problems(slug, routes, LOCAL_BACKENDS):
                raise ValueError(problem)
            for n, route in enumerate(routes):
                where = f"models.{slug}.routes[{n}]" if model.routes else f"models.{slug}"
                _check_backend(where, route, self.providers)
                if route.backend == "diffusers":
                    wrong = diffusers_problem(
                        route.options, model.text_to_video, model.image_to_video
                    )
                    if wrong is not None:
                        raise ValueError(f"{where}{wrong}")
                for problem in route.pricing.problems(model.offered_resolutions):
                    raise ValueError(f"{where}: {problem}")
            for problem in model.limits.problems(model.parameters):
                raise ValueError(f"models.{slug}: {problem}")
        unknown = sorted(set(worker.models or ()) - set(self.enabled_models()))
        if unknown:
            raise ValueError(
                f"worker.models names {', '.join(map(repr, unknown))}, which "
                f"{'is not a model' if len(unknown) == 1 else 'are not models'} of this "
                "configuration (or disabled); models: " + ", ".join(sorted(self.enabled_models()))
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vidgate.db').resolve()}"

    @property
    def storage_path(self) -> Path:
        """The directory of local storage (unused when storage is S3)."""
        location = self.storage.location
        return location if isinstance(location, Path) else self.data_dir / "files"

    def enabled_models(self) -> dict[str, ModelConfig]:
        return {slug: m for slug, m in self.models.items() if m.enabled}

    def provider_api_key(self, provider: str, env: Mapping[str, str] | None = None) -> str | None:
        """The provider's key from its environment variable, without the whitespace a key
        copied from a file brings along (a newline in a header would be refused, and the
        error would quote the key)."""
        config = self.providers.get(provider)
        if config is None or not config.api_key_env:
            return None
        key = (os.environ if env is None else env).get(config.api_key_env, "").strip()
        return key or None

    def provider_api_keys(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Every configured provider key: secrets no log line may show."""
        keys = (self.provider_api_key(name, env) for name in self.providers)
        return [key for key in keys if key]

    def log_secrets(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Every secret no log line may show: the provider keys, the S3 secret key and
        session token, and the metrics token."""
        found = self.provider_api_keys(env)
        for secret in (self.storage.secret_access_key, self.storage.session_token):
            if secret is not None and secret.get_secret_value():
                found.append(secret.get_secret_value())
        with contextlib.suppress(ConfigError):  # a missing token is refused where it is used
            token = self.metrics_token(env)
            if token is not None:
                found.append(token)
        return found

    def metrics_token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The bearer token ``/metrics`` asks for (``[metrics] token_env``), if any."""
        if not self.metrics.token_env:
            return None
        token = (os.environ if env is None else env).get(self.metrics.token_env, "").strip()
        if not token:
            raise ConfigError(
                f"[metrics] token_env names {self.metrics.token_env}, which is not set or "
                "empty; set it to the token scrapes send, or remove token_env"
            )
        return token


def load_settings(
    config_file: Path | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from flags (the arguments), the environment and the config file."""
    env = os.environ if env is None else env
    if config_file is None and env.get("VIDGATE_CONFIG"):
        config_file = Path(env["VIDGATE_CONFIG"])
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {config_file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    elif env.get("VIDGATE_DATA_DIR"):
        raw["data_dir"] = env["VIDGATE_DATA_DIR"]
    if env.get("VIDGATE_DATABASE_URL"):
        raw["database_url"] = env["VIDGATE_DATABASE_URL"]
    _storage_from_env(raw, env)
    for key, value in (overrides or {}).items():  # "section.key" sets one key of a section
        section, _, sub = key.rpartition(".")
        target = raw.setdefault(section, {}) if section else raw
        if isinstance(target, dict):
            target[sub] = value
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        where = f" in {config_file}" if config_file else ""
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid configuration{where}: {problems}") from None
    return settings


def _storage_from_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """``VIDGATE_STORAGE_URL`` over the file's ``storage.url``; the standard AWS variables
    where the file's ``[storage]`` leaves a key unset (they are machine-wide, the file is
    vidgate's own)."""
    storage = raw.get("storage")
    if storage is None:
        storage = raw["storage"] = {}
    if not isinstance(storage, dict):
        return  # validation says what is wrong with it
    if env.get("VIDGATE_STORAGE_URL"):
        storage["url"] = env["VIDGATE_STORAGE_URL"]
    if not str(storage.get("url", "")).lower().startswith("s3://"):
        return  # the variables are not vidgate's: local storage ignores them
    for key, variable in AWS_VARIABLES.items():
        if key not in storage and env.get(variable):
            storage[key] = env[variable]
    if "region" not in storage and env.get("AWS_DEFAULT_REGION"):
        storage["region"] = env["AWS_DEFAULT_REGION"]


def _problem(location: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")  # our own checks name their keys
    where = ".".join(str(part) for part in location)
    if not location or message.startswith(f"{where}."):
        return message
    return f"{where}: {message}"
