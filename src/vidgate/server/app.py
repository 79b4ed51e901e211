"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Receive, Scope, Send

from vidgate import logs, ui
from vidgate.config import Settings
from vidgate.metrics import Metrics
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import Limits
from vidgate.runs.request_schema import submit_schema
from vidgate.server import errors
from vidgate.server.account_routes import router as account_router
from vidgate.server.common import REQUIRED
from vidgate.server.fast_path import FastPath
from vidgate.server.ops_routes import router as ops_router
from vidgate.server.ratelimit import limiter_for
from vidgate.server.request_ids import echoing, request_id_of
from vidgate.server.routes import router
from vidgate.server.slow_clients import timed_receive
from vidgate.server.state import AppState
from vidgate.server.status_routes import router as status_router
from vidgate.server.webhook_routes import router as webhook_router
from vidgate.services import Services, build_catalog, build_storage
from vidgate.store.sql import SQLStore
from vidgate.worker.remote.breaker import RouteBreakers

Background = Callable[[Services, asyncio.Event], Coroutine[Any, Any, None]]
"""Work the process runs beside the API until the event is set (the in-process worker)."""
BackgroundExit = Callable[[str], None]
"""Told why the background work stopped when it stopped on its own (it failed)."""

log = logging.getLogger("vidgate.worker")


class VidgateApp(FastAPI):
    """FastAPI, with plain status polls and submits answered before its routing, by the
    same code as the routes (see :mod:`vidgate.server.fast_path`), request bodies that
    must arrive within ``body_timeout_s`` (see :mod:`vidgate.server.slow_clients`), and an
    ``X-Request-ID`` on every answer (see :mod:`vidgate.server.request_ids`)."""

    fast_path: FastPath | None = None
    body_timeout_s: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        token = logs.request_id.set(request_id.decode())
        try:
            if self.body_timeout_s is not None and scope["method"] not in ("GET", "HEAD"):
                receive = timed_receive(receive, self.body_timeout_s)
            fast = self.fast_path
            if fast is not None and await fast(scope, receive, send, request_id):
                return
            await super().__call__(scope, receive, echoing(send, request_id))
        finally:
            logs.request_id.reset(token)


def create_app(
    settings: Settings,
    *,
    background: Background | None = None,
    on_background_exit: BackgroundExit | None = None,
) -> VidgateApp:
    """The ASGI app. With ``background`` (the worker, composed by the command line) the
    process also does the work; otherwise it only serves the API and separate workers do.
    The server never calls the worker: a submit is a run event that the worker hears.

    If the background work stops on its own (it failed), ``/healthz`` answers 503 from then
    on and ``on_background_exit`` is told why (``vidgate serve`` then exits non-zero)."""

    catalog = build_catalog(settings)
    metrics_token = settings.metrics_token()
    limits = Limits(
        prompt_max_chars=settings.limits.prompt_max_chars,
        image_max_bytes=settings.limits.image_max_bytes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await SQLStore.open(
            settings.resolved_database_url,
            busy_timeout_s=settings.database_busy_timeout_s,
            durability=settings.durability,
        )
        await store.listen()
        metrics = Metrics()
        store.events.add_commit_listener(metrics.committed)
        state = AppState(
            settings=settings,
            store=store,
            storage=build_storage(settings),
            catalog=catalog,
            moderation=Moderation(
                settings.moderation.blocked_words,
                settings.moderation.blocked_patterns,
                settings.moderation.message,
            ),
            limits=limits,
            limiter=limiter_for(
                store, settings.limits.submits_per_minute, settings.limits.submit_burst
            ),
            metrics=metrics,
            metrics_token=metrics_token,
        )
        stop = asyncio.Event()
        worker_task: asyncio.Task[None] | None = None
        if background is not None:
            state.breakers = RouteBreakers(metrics=metrics)
            services = Services(
                settings, store, state.storage, catalog, metrics, breakers=state.breakers
            )
            worker_task = asyncio.create_task(background(services, stop), name="worker")
            state.worker = True

            def ended(task: asyncio.Task[None]) -> None:
                reason = _failure(task, stop)
                if reason is None:
                    return
                state.worker_failure = reason
                log.error("worker.died reason=%r", reason, exc_info=_exception(task))
                if on_background_exit is not None:
                    on_background_exit(reason)

            worker_task.add_done_callback(ended)
        app.state.vidgate = state
        if settings.server.fast_path:
            app.fast_path = FastPath(state)
        try:
            yield
        finally:
            app.fast_path = None
            stop.set()
            if worker_task is not None:
                await asyncio.wait([worker_task])  # a failure was told by ``ended``
            await store.close()

    app = VidgateApp(
        title="vidgate",
        version="0.1.0",
        description="Self-hosted gateway for AI video generation with the NanoGPT video API.",
        lifespan=lifespan,
    )
    app.body_timeout_s = settings.server.body_timeout_s
    errors.install(app)
    app.include_router(router)
    app.include_router(status_router)
    app.include_router(webhook_router)
    app.include_router(ops_router)
    app.include_router(account_router)
    if settings.ui.enabled:
        ui.install(app)
    app.openapi = lambda: _openapi(app, submit_schema(catalog, limits))  # type: ignore[method-assign]
    return app


def _exception(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def _failure(task: asyncio.Task[None], stop: asyncio.Event) -> str | None:
    """Why the background task ended; None if it ended cleanly after it was asked to."""
    if task.cancelled():
        return "it was cancelled"
    error = task.exception()
    if error is None:
        return None if stop.is_set() else "it returned before it was asked to stop"
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]  # the worker's parts run in a task group
    return f"{type(error).__name__}: {error}"


def _openapi(app: FastAPI, submit_body: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's schema, with the validation (422) responses it adds removed: vidgate answers
    invalid parameters with 400 in the route's documented error shape. The submit body is
    this server's (its models and limits); query parameters are never null."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for route, path in schema.get("paths", {}).items():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
            if route.startswith("/api/") and "401" in operation.get("responses", {}):
                operation["security"] = [{"apiKeyAuth": []}, {"bearerAuth": []}]
            for parameter in operation.get("parameters", ()):
                _not_null(parameter)
    schema.setdefault("components", {}).setdefault("schemas", {})["SubmitRequest"] = submit_body
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    schema.setdefault("components", {})["securitySchemes"] = {
        "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
    }
    app.openapi_schema = schema
    return schema


def _not_null(parameter: dict[str, Any]) -> None:
    """A query parameter is a string when sent (never null); one the route needs (see
    :func:`vidgate.server.common.needed`) is required."""
    schema = parameter.get("schema", {})
    if schema.pop(REQUIRED, False):
        parameter["required"] = True
    options = schema.get("anyOf")
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1:
            schema.pop("anyOf")
            schema.update(kept[0])
