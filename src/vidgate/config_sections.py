"""The settings sections of the server, the worker and their services (``[server]``,
``[limits]``, ``[worker]``, ``[storage]``, ``[webhooks]``, ``[metrics]``, ``[ui]``,
``[moderation]``), gathered by :class:`vidgate.config.Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from vidgate.storage.location import S3Location, storage_location


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
