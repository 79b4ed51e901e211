"""The dashboard's overviews: providers (runs in flight, error rate, run time and request
latency) and usage per key.

The provider page reads two sources, each for what only it knows:

* the database, for runs by backend: in flight now, and the outcomes of recent runs. It is
  the whole installation's, whichever process (API, separate workers) did the work;
* this process's metrics registry (what ``/metrics`` serves), for the requests sent to each
  provider: counts, errors and latency. Those are counted where they are sent, so only a
  process that runs a worker has any; the database keeps no per-request record.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client.metrics import MetricWrapperBase

from vidgate.metrics import Metrics
from vidgate.runs.days import day_bounds, usage_range
from vidgate.server.common import state_of
from vidgate.ui.render import message_page, page
from vidgate.ui.signin import Admin

router = APIRouter(include_in_schema=False)
WINDOW_H = 24
USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366


@dataclass(frozen=True)
class RequestStats:
    provider: str
    operation: str
    requests: int
    errors: int
    mean_latency_s: float | None

    @property
    def error_rate(self) -> float | None:
        return None if self.requests == 0 else self.errors / self.requests


def _samples(metric: MetricWrapperBase, suffix: str) -> dict[tuple[str, str], float]:
    """The metric's samples named ``<name><suffix>``, summed by (provider, operation)."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix:
                labels = sample.labels
                totals[(labels["provider"], labels["operation"])] += sample.value
    return totals


def request_stats(metrics: Metrics) -> list[RequestStats]:
    """Provider requests counted by this process, by provider and operation."""
    requests = _samples(metrics.provider_requests, "_total")
    errors = _samples(metrics.provider_errors, "_total")
    latency_sum = _samples(metrics.provider_latency, "_sum")
    latency_count = _samples(metrics.provider_latency, "_count")
    stats = []
    for labels in sorted(requests):
        count = latency_count.get(labels, 0.0)
        mean = latency_sum[labels] / count if count else None
        stats.append(RequestStats(*labels, int(requests[labels]), int(errors.get(labels, 0)), mean))
    return stats


@router.get("/ui/providers")
async def providers_page(request: Request, admin: Admin) -> Response:
    state = state_of(request)
    backends = await state.store.backend_outcomes(time.time() - WINDOW_H * 3600)
    context = {
        "title": "Providers",
        "signed_in": admin.name,
        "backends": backends,
        "requests": request_stats(state.metrics),
        "window_h": WINDOW_H,
        "worker": state.worker,
    }
    return page(request, state, "providers.html", context)


@router.get("/ui/usage")
async def usage_page(
    request: Request, admin: Admin, days: Annotated[str | None, Query()] = None
) -> Response:
    state = state_of(request)
    count = USAGE_DEFAULT_DAYS
    if days:
        if not days.isdigit() or not 1 <= int(days) <= USAGE_MAX_DAYS:
            message = f"'days' must be a whole number from 1 to {USAGE_MAX_DAYS}, not {days!r}"
            return message_page(request, state, 400, "Usage", message, back_url="/ui/usage")
        count = int(days)
    first, last = usage_range(None, count, dt.datetime.now(dt.UTC).date())
    rows = await state.store.usage(*day_bounds(first, last))
    keys = {key.id: key for key in await state.store.list_keys()}
    per_key: dict[str, dict[str, Any]] = {}
    by_model: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = keys.get(row.api_key_id)
        entry = per_key.setdefault(
            row.api_key_id,
            {
                "name": key.name if key is not None else row.api_key_id,
                "budget": key.budget_usd_per_day if key is not None else None,
                "runs": 0,
                "seconds": 0.0,
                "cost": 0.0,
                "models": [],
            },
        )
        model = by_model.get((row.api_key_id, row.model))
        if model is None:
            model = by_model[(row.api_key_id, row.model)] = {
                "model": row.model,
                "runs": 0,
                "seconds": 0.0,
                "cost": 0.0,
            }
            entry["models"].append(model)
        for total in (entry, model):
            total["runs"] += row.runs
            total["seconds"] += row.seconds
            total["cost"] += row.cost_usd
    context = {
        "title": "Usage",
        "signed_in": admin.name,
        "days": count,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "per_key": sorted(per_key.values(), key=lambda k: str(k["name"])),
    }
    return page(request, state, "usage.html", context)
