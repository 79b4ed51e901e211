"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from vidgate.config import Settings
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import Limits
from vidgate.server import errors
from vidgate.server.ratelimit import TokenBucketLimiter
from vidgate.server.routes import router
from vidgate.server.state import AppState
from vidgate.services import build_catalog, build_storage
from vidgate.store.sql import SQLStore
from vidgate.worker.runtime import WorkerRuntime


def create_app(settings: Settings, *, run_worker: bool | None = None) -> FastAPI:
    """The ASGI app. With ``run_worker`` (default: ``settings.worker.enabled``) the process
    also renders runs; otherwise it only serves the API and separate workers do the work."""
    with_worker = settings.worker.enabled if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await SQLStore.open(settings.resolved_database_url)
        catalog = build_catalog(settings)
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
            limits=Limits(
                prompt_max_chars=settings.limits.prompt_max_chars,
                image_max_bytes=settings.limits.image_max_bytes,
            ),
            limiter=TokenBucketLimiter(
                settings.limits.submits_per_minute, settings.limits.submit_burst
            ),
        )
        stop = asyncio.Event()
        worker_task = None
        if with_worker:
            state.worker = WorkerRuntime(settings, store, state.storage, catalog)
            worker_task = asyncio.create_task(state.worker.run(stop))
        app.state.vidgate = state
        try:
            yield
        finally:
            stop.set()
            if worker_task is not None:
                await worker_task
            await store.close()

    app = FastAPI(
        title="vidgate",
        version="0.1.0",
        description="Self-hosted gateway for AI video generation with the NanoGPT video API.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the validation (422) responses it adds removed: vidgate answers
    invalid parameters with 400 in the route's documented error shape."""
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
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    schema.setdefault("components", {})["securitySchemes"] = {
        "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
    }
    app.openapi_schema = schema
    return schema
