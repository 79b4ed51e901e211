"""What operators and their tools ask a process: is it alive (``/healthz``), may it take
traffic (``/readyz``), and what has it done (``/metrics``). None needs an API key;
``/metrics`` may ask for a token of its own (``[metrics] token_env``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette
from starlette.routing import Route

from vidgate.metrics import CONTENT_TYPE, Metrics
from vidgate.server import schemas
from vidgate.server.common import state_of
from vidgate.server.errors import ApiError, error_response, status_error_body
from vidgate.storage.base import StorageError
from vidgate.store.errors import StoreUnavailable

router = APIRouter()
READY_TIMEOUT_S = 2.0
"""The longest a readiness check waits for the database or the storage."""
METRICS_PATH = "/metrics"


@router.get(
    "/healthz",
    responses=schemas.error_responses(503),
    summary="Liveness and database check",
)
async def healthz(request: Request) -> dict[str, Any]:
    """Cheap however many runs are stored: it counts the runs in flight only. A 503 once
    this process's worker has stopped (failed): runs submitted here would only wait."""
    state = state_of(request)
    if state.worker_failure is not None:
        raise ApiError(
            503,
            f"the worker in this process has stopped ({state.worker_failure}); runs "
            "submitted here wait for another worker. Restart vidgate; its log has the details",
        )
    counts = await state.store.count_in_flight()
    return {
        "status": "ok",
        "runs": counts,
        "worker": state.worker,
        "waiting": state.store.events.waiting(),
    }


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready: the database and the storage answer, the worker runs"},
        503: {"description": "Not ready: ``checks`` says which part is not, and why"},
    },
    summary="Readiness: database, storage and worker",
)
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    checks: dict[str, str] = {}
    checks["store"] = await _check(state.store.ping(), "the database")
    checks["storage"] = await _check(state.storage.check(), "the storage")
    if not state.worker:
        checks["worker"] = "none in this process"
    elif state.worker_failure is None:
        checks["worker"] = "ok"
    else:
        checks["worker"] = f"stopped: {state.worker_failure}"
    failing = {p: why for p, why in checks.items() if why not in ("ok", "none in this process")}
    # A route whose circuit is open does not make the process unready (the model's other
    # routes, or later tries, serve its runs): it is shown for operators.
    routes = state.breakers.snapshot() if state.breakers is not None else {}
    extra = {"routes": routes} if routes else {}
    if not failing:
        return JSONResponse({"status": "ready", "checks": checks, **extra})
    message = "not ready: " + "; ".join(f"{part} {why}" for part, why in failing.items())
    return JSONResponse({**status_error_body(503, message), "checks": checks, **extra}, 503)


async def _check(probe: Any, what: str) -> str:
    """``ok``, or ``unreachable: why``."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await probe
    except TimeoutError:
        return f"unreachable: {what} did not answer within {READY_TIMEOUT_S:g} s"
    except (StoreUnavailable, StorageError) as exc:
        return f"unreachable: {exc}"
    return "ok"


@router.get(METRICS_PATH, include_in_schema=False)
async def metrics_route(request: Request) -> Response:
    state = state_of(request)
    refusal = scrape_refusal(state.settings.metrics.enabled, state.metrics_token, request)
    if refusal is not None:
        return refusal
    # While the database is unavailable the gauges keep their last values; the counters
    # are this process's own and are answered all the same.
    with contextlib.suppress(StoreUnavailable, TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT_S):
            state.metrics.set_in_flight(await state.store.count_in_flight())
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def scrape_refusal(enabled: bool, token: str | None, request: Request) -> Response | None:
    """The answer to a scrape that may not have the metrics (off, or without the token);
    None if it may."""
    path, method = request.url.path, request.method
    if not enabled:
        message = "metrics are off on this server ([metrics] enabled = false in its config)"
        return error_response(path, method, ApiError(404, message))
    if token is not None:
        sent = request.headers.get("authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            message = (
                "metrics need a token: send 'Authorization: Bearer TOKEN' with the token "
                "in the environment variable that [metrics] token_env names"
            )
            refusal = ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})
            return error_response(path, method, refusal)
    return None


def metrics_app(metrics: Metrics, *, enabled: bool, token: str | None) -> Starlette:
    """An app that serves only ``/metrics``, for a process without the API (a worker)."""

    async def scrape(request: Request) -> Response:
        refusal = scrape_refusal(enabled, token, request)
        return refusal or Response(metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route(METRICS_PATH, scrape)])
