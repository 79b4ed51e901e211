"""What a process counts, for Prometheus (``/metrics``).

Each process keeps its own registry and is scraped on its own, Prometheus's usual model:
``vidgate serve`` at ``/metrics`` beside its API, a ``vidgate worker`` on its own port
(``--metrics-port``). Sums over processes are the totals. (prometheus_client's
multiprocess mode is for servers that fork workers sharing one port, with files in a
shared directory; vidgate's processes are separate services, often on other machines.)

Runs are counted where their changes are committed (:meth:`Metrics.committed`, told by
the store after each commit): every change is counted once, by the process that made it,
whatever the event feeds echo. Gauges of queued and running runs are read from the
database when scraped (see :meth:`Metrics.set_in_flight`): they are the whole system's,
not a process's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from vidgate.events.hub import RunChange
from vidgate.runs.status import Status

CONTENT_TYPE = CONTENT_TYPE_LATEST
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
"""Seconds: a test card renders in about a second, a provider's video in minutes."""
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WEBHOOK_OUTCOMES = {
    "delivered": "delivered",
    "pending": "retrying",
    "gone": "gone",
    "failed": "failed",
}
"""A delivery's status after an attempt, and the outcome the attempt is counted under."""


class Metrics:
    """The metrics of one process, in a registry of its own (no global state: an app or a
    worker made in a test counts from zero)."""

    def __init__(self, *, in_flight_gauges: bool = True) -> None:
        """``in_flight_gauges``: whether this process shows the system's queued and running
        runs (an API does; a worker does not, so that they are not counted twice)."""
        self.registry = registry = CollectorRegistry(auto_describe=True)
        gauges = registry if in_flight_gauges else None
        self.runs_submitted = Counter(
            "vidgate_runs_submitted",
            "Runs accepted (idempotent replays are not counted again)",
            ["model", "backend"],
            registry=registry,
        )
        self.submits_refused = Counter(
            "vidgate_submits_refused",
            "Submits refused after authentication, by the error type answered",
            ["reason"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "vidgate_runs_finished",
            "Runs that reached a terminal status",
            ["model", "backend", "status"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "vidgate_run_duration_seconds",
            "From a run's start to its end (runs that never started are not observed)",
            ["model", "backend", "status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "vidgate_run_queue_wait_seconds",
            "From a run's submit to its start",
            ["model", "backend"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.queued = Gauge(
            "vidgate_runs_queued",
            "Runs waiting to start, in the whole system (read from the database)",
            registry=gauges,
        )
        self.in_progress = Gauge(
            "vidgate_runs_in_progress",
            "Runs started and not finished, in the whole system (read from the database)",
            registry=gauges,
        )
        self.provider_requests = Counter(
            "vidgate_provider_requests",
            "Operations sent to a provider (submit, poll, cancel, download)",
            ["provider", "operation"],
            registry=registry,
        )
        self.provider_errors = Counter(
            "vidgate_provider_errors",
            "Provider operations that raised, by the error's class",
            ["provider", "operation", "error"],
            registry=registry,
        )
        self.provider_latency = Histogram(
            "vidgate_provider_request_duration_seconds",
            "How long a provider operation took (a download: the whole video)",
            ["provider", "operation"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "vidgate_webhook_attempts",
            "Webhook delivery attempts: delivered, retrying (failed, tried again later), "
            "gone (the receiver answered 410) or failed (given up)",
            ["outcome"],
            registry=registry,
        )
        self.route_open = Gauge(
            "vidgate_route_circuit_open",
            "1 while a model's route is skipped by its circuit breaker (this process's view)",
            ["model", "provider"],
            registry=registry,
        )
        self.route_failovers = Counter(
            "vidgate_route_failovers",
            "Submits sent on to a model's next route, by the route that was passed over and why "
            "(refused, circuit_open, over_limit, content_policy)",
            ["model", "provider", "reason"],
            registry=registry,
        )
        self.storage_bytes = Counter(
            "vidgate_storage_bytes_written",
            "Bytes of finished videos written to storage",
            ["backend"],
            registry=registry,
        )
        self.retention_deleted = Counter(
            "vidgate_retention_deleted",
            "What the retention sweep deleted: videos (with their thumbnails) and runs",
            ["what"],
            registry=registry,
        )

    def committed(self, change: RunChange) -> None:
        """Count a change of a run that this process committed."""
        run = change.run
        if run is None or run.output_deleted_at is not None:
            return  # a retention sweep's mark: the run finished, and was counted, long ago
        status = change.status
        if status is Status.IN_QUEUE:
            if change.seq == 1:
                self.runs_submitted.labels(run.model, run.backend).inc()
        elif status is Status.IN_PROGRESS:
            if run.started_at is not None and run.started_at == run.updated_at:
                wait_s = max(0.0, run.started_at - run.created_at)
                self.queue_wait.labels(run.model, run.backend).observe(wait_s)
        else:
            self.runs_finished.labels(run.model, run.backend, status.value).inc()
            if run.started_at is not None:
                ended = run.completed_at or run.updated_at
                self.run_duration.labels(run.model, run.backend, status.value).observe(
                    max(0.0, ended - run.started_at)
                )
            if status is Status.COMPLETED and run.output_size:
                self.storage_bytes.labels(run.backend).inc(run.output_size)

    def route_state(self, model: str, provider: str, *, open_: bool) -> None:
        self.route_open.labels(model, provider).set(1 if open_ else 0)

    def failover(self, model: str, provider: str, reason: str) -> None:
        self.route_failovers.labels(model, provider, reason).inc()

    def refused(self, reason: str) -> None:
        self.submits_refused.labels(reason).inc()

    def webhook_attempt(self, status: str) -> None:
        """Count an attempt by the delivery's status after it."""
        self.webhook_attempts.labels(WEBHOOK_OUTCOMES.get(status, status)).inc()

    @contextlib.contextmanager
    def provider_call(self, provider: str, operation: str) -> Iterator[None]:
        """Count and time one provider operation done inside the block. One that is
        cancelled (or whose stream is closed early) is counted, but not as an error."""
        self.provider_requests.labels(provider, operation).inc()
        started = time.monotonic()
        try:
            yield
        except GeneratorExit:
            raise
        except Exception as exc:
            self.provider_errors.labels(provider, operation, type(exc).__name__).inc()
            self.provider_latency.labels(provider, operation).observe(time.monotonic() - started)
            raise
        self.provider_latency.labels(provider, operation).observe(time.monotonic() - started)

    def set_in_flight(self, counts: dict[str, int]) -> None:
        """Queued and running runs by status, as the store counted them."""
        self.queued.set(counts.get(Status.IN_QUEUE.value, 0))
        self.in_progress.set(counts.get(Status.IN_PROGRESS.value, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
