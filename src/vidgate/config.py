"""Typed settings. The only module that reads the environment.

Settings come from, in order of precedence: command-line flags, environment variables
(``VIDGATE_DATA_DIR``, ``VIDGATE_CONFIG``, ``VIDGATE_DATABASE_URL``,
``VIDGATE_STORAGE_URL``), the TOML config file, and the defaults below; the standard
``AWS_*`` variables fill the S3 keys of ``[storage]`` that the file leaves unset. Every key
is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from vidgate.backends.diffusers_options import DiffusersOptions, diffusers_problem
from vidgate.config_retention import RetentionSettings
from vidgate.config_routes import ROUTE_KEYS, HealthFields, PriceFields, RouteConfig, route_problems
from vidgate.runs.catalog import (
    LOCAL_BACKENDS,
    REMOTE_BACKENDS,
    generic_parameters,
    testcard_parameters,
)
from vidgate.runs.limits import ModelLimits
from vidgate.storage.location import S3Location, storage_location

DEFAULT_DATA_DIR = Path(".vidgate")
Durability = Literal["normal", "full"]
"""How hard a commit is pushed to disk before it is acknowledged (see the README)."""


class ConfigError(Exception):
    """The configuration is not valid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_base_url: str | None = None
    """Absolute URL clients reach this server at; derived from each request when unset."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    status_retry_after_s: int = Field(2, ge=1)
    """The poll interval suggested in ``Retry-After`` on non-terminal status responses."""
    unavailable_retry_after_s: int = Field(5, ge=1)
    """The ``Retry-After`` of the ``503`` answers given while the database is unavailable."""
    max_wait_s: int = Field(60, ge=0, le=60)
    """The longest ``waitSeconds`` a long-poll may hold a status request (the API's bound
    is 60)."""
    sse_heartbeat_s: float = Field(15, gt=0, le=300)
    """How often an event stream with nothing to tell sends a keep-alive comment."""
    fast_path: bool = True
    """Answer plain status polls and submits before FastAPI's routing (the same answers,
    less work); off, the routes answer them."""
    status_cache_runs: int = Field(20_000, ge=0)
    """Finished runs whose encoded status answers are kept in memory (0: none)."""
    header_timeout_s: float = Field(10, gt=0, le=3600)
    """A request's headers must arrive within this long of the connection opening (or of
    the first byte after the previous answer); a slower client is disconnected."""
    body_timeout_s: float = Field(30, gt=0, le=3600)
    """A request body may take this long to arrive (time spent waiting for the client);
    past it the request is answered 408 and the connection closed."""


class LimitSettings(_Section):
    prompt_max_chars: int = Field(4000, ge=1)
    image_max_bytes: int = Field(4 * 1024 * 1024, ge=1)
    submits_per_minute: float = Field(50, gt=0)
    """Token-bucket refill rate per API key; the bucket holds ``submit_burst`` tokens."""
    submit_burst: int | None = Field(None, ge=1)
    """Bucket size; defaults to ``submits_per_minute`` rounded up."""
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)


class WorkerSettings(_Section):
    enabled: bool = True
    """Run a worker inside ``vidgate serve`` (the single-machine default)."""
    concurrency: int = Field(2, ge=1, le=256)
    """Local renders at once per worker process."""
    lease_s: float = Field(15, ge=1)
    """How long a claim lasts without a heartbeat; a dead worker's runs are retaken after it."""
    heartbeat_s: float = Field(0.5, gt=0)
    """How often leases are renewed and cancellations noticed (a cancel stops a render within
    about this long)."""
    idle_poll_s: float = Field(0.25, gt=0)
    remote_concurrency: int = Field(200, ge=1, le=10000)
    """Provider operations (submit, poll, copy) in flight at once per worker process."""
    models: list[str] | None = None
    """Render and poll only these models' runs (``vidgate worker --models``): GPU workers
    take the open models they have loaded, CPU workers the rest, from one queue. Unset: all."""
    max_attempts: int = Field(3, ge=1)
    """Claims of one run before it is failed instead of retried (a run that kills workers)."""
    allow_private_output_hosts: bool = False
    """Let provider output URLs (and redirects) outside a provider's own ``base_url`` origin
    reach loopback, private, link-local or metadata addresses. Off: such downloads are
    refused, so a provider's answer cannot point the worker into your network."""


class StorageSettings(_Section):
    kind: Literal["local", "s3"] | None = None
    """Older config files name the kind of storage; ``url`` decides it, and a ``kind``
    that contradicts it is refused."""
    url: str | None = None
    """Where videos are kept: a local directory (a path, or ``file:///path``) or an
    S3-compatible bucket, ``s3://bucket/prefix``; default the directory ``DATA_DIR/files``
    (or ``path``)."""
    path: Path | None = None
    """Where local storage keeps files; default ``DATA_DIR/files``."""
    # S3 only; each defaults to its variable in AWS_VARIABLES. Without keys, the AWS
    # default chain applies (web identity, container or instance credentials).
    endpoint_url: str | None = None
    """An S3-compatible service's endpoint (MinIO, R2, B2); default AWS S3."""
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    """For temporary credentials."""
    url_ttl_s: int = Field(24 * 3600, ge=60)
    copy_attempts: int = Field(5, ge=1)
    """Tries to copy a finished remote video into storage before the run is failed."""

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(
                f"{value!r} is not an http(s) URL; write the S3 endpoint as "
                "https://host[:port] (or http:// for a local test server)"
            )
        return value

    @model_validator(mode="after")
    def _check_location(self) -> StorageSettings:
        """A bad URL is refused at load, not at the first video."""
        storage_location(self.url, self.path, self.kind, self.url_ttl_s)
        return self

    @property
    def location(self) -> Path | S3Location | None:
        """The directory or bucket named by ``url`` (or ``path``); None: ``DATA_DIR/files``."""
        return storage_location(self.url, self.path, self.kind, self.url_ttl_s)


AWS_VARIABLES = {
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}
"""The standard variables that fill ``[storage]`` keys the config file leaves unset."""


class WebhookSettings(_Section):
    allow_private_hosts: bool = False
    """Allow webhook targets on loopback, private, link-local or metadata addresses (for
    receivers on your own network, and tests). Off: such targets are refused at submit and
    again at delivery."""
    timeout_s: float = Field(10, gt=0, le=60)
    """One delivery attempt's limit: connect, send and the receiver's answer."""
    retry_for_s: float = Field(24 * 3600, ge=0)
    """Failed deliveries are retried, with exponential backoff and jitter, until at least
    this long after the event; then the delivery is given up."""
    first_retry_s: float = Field(5, gt=0)
    """The delay before the first retry; each later one doubles it (with jitter)."""
    max_retry_s: float = Field(3600, gt=0)
    """The longest delay between two attempts."""
    concurrency: int = Field(64, ge=1, le=10000)
    """Deliveries in flight at once per worker process."""
    secret_overlap_s: float = Field(24 * 3600, ge=0)
    """After ``vidgate keys webhook-secret --rotate``, the old secret signs beside the new
    one for this long."""


class MetricsSettings(_Section):
    enabled: bool = True
    """Serve ``/metrics`` (off: it answers 404)."""
    token_env: str | None = None
    """The environment variable that holds a token scrapes must send as ``Authorization:
    Bearer TOKEN``; unset, ``/metrics`` is open to whoever reaches the port."""
    worker_host: str = "127.0.0.1"
    worker_port: int | None = Field(None, ge=0, le=65535)
    """Where ``vidgate worker`` serves its own ``/metrics`` (``--metrics-port``); unset,
    a worker process serves none."""


class UiSettings(_Section):
    enabled: bool = True
    """Serve the operators' dashboard at ``/ui`` (off: it answers 404)."""
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 24 * 3600)
    """How long a dashboard sign-in lasts; then the admin key is asked for again."""


class ModerationSettings(_Section):
    blocked_words: list[str] = Field(default_factory=list)
    blocked_patterns: list[str] = Field(default_factory=lambda: [r"\bsandbox:blocked\b"])
    message: str = "Your prompt was blocked by the content policy. Please modify it and try again."


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
    settings.metrics_token(env)  # a token_env that names no token is found at start
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
