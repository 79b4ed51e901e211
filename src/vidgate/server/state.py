"""What the routes share: built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from vidgate.config import Settings
from vidgate.metrics import Metrics
from vidgate.runs.catalog import Catalog
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import Limits
from vidgate.server.ratelimit import Limiter
from vidgate.storage.base import Storage
from vidgate.store.sql import SQLStore
from vidgate.worker.remote.breaker import RouteBreakers


@dataclass
class AppState:
    settings: Settings
    store: SQLStore
    storage: Storage
    catalog: Catalog
    moderation: Moderation
    limits: Limits
    limiter: Limiter
    metrics: Metrics
    metrics_token: str | None = None
    """The bearer token ``/metrics`` asks for, if any."""
    worker: bool = False
    """Whether this process runs a worker too."""
    worker_failure: str | None = None
    """Why this process's worker stopped, once it has failed (``/healthz`` then fails)."""
    breakers: RouteBreakers | None = None
    """The route circuits of this process's worker, if it runs one (``/readyz`` shows them)."""
