"""Serving the app with uvicorn until it is told to stop, or until its worker stops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shlex
from collections.abc import Generator

import uvicorn

from vidgate.config import Settings
from vidgate.metrics import Metrics
from vidgate.server.app import Background, create_app
from vidgate.server.ops_routes import metrics_app
from vidgate.server.slow_clients import protocol_with_header_timeout
from vidgate.storage.location import S3Location


class ServerNotStarted(Exception):
    """The server did not start (uvicorn has logged why: a port in use, a failed start)."""


def serve_until_stopped(
    settings: Settings, *, background: Background | None, log_level: str
) -> str | None:
    """Serve until SIGINT or SIGTERM, or until ``background`` stops on its own: then the
    server stops gracefully and the reason is returned (else None), so that the process can
    exit non-zero instead of accepting runs that no one works on."""
    failures: list[str] = []

    def background_stopped(reason: str) -> None:
        failures.append(reason)
        server.should_exit = True

    app = create_app(settings, background=background, on_background_exit=background_stopped)
    # What is here now (modules, the app, its routes and schemas) lives as long as the
    # process: kept out of the collector's full passes, which otherwise walk it all and
    # stopped every request for up to a tenth of a second (the slowest answers under load).
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.server.host,
            port=settings.server.port,
            http=protocol_with_header_timeout(settings.server.header_timeout_s),
            log_level=log_level,
            log_config=None,  # uvicorn's lines go through vidgate's (JSON) logging
            timeout_graceful_shutdown=5,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if failures:
        return failures[0]
    if not server.started:
        raise ServerNotStarted
    return None


async def serve_metrics(
    metrics: Metrics, settings: Settings, port: int, stop: asyncio.Event
) -> None:
    """Serve ``metrics`` at ``/metrics`` on ``[metrics] worker_host`` and ``port`` until
    ``stop`` is set (a worker process, which has no API of its own)."""
    app = metrics_app(metrics, enabled=settings.metrics.enabled, token=settings.metrics_token())
    config = uvicorn.Config(
        app, host=settings.metrics.worker_host, port=port, log_config=None, access_log=False
    )
    server = _SignalsLeftAlone(config)
    task = asyncio.create_task(server.serve(), name="metrics")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task


class _SignalsLeftAlone(uvicorn.Server):
    """A server that leaves SIGINT and SIGTERM to the process: it stops when told."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def print_welcome(base: str, key: str | None, settings: Settings) -> None:
    """What ``vidgate serve`` prints as it starts: where, the first key, and how to try it."""
    shown_key = key or "$VIDGATE_API_KEY"
    body = json.dumps(
        {
            "model": "testcard-video",
            "prompt": "a red fox in the snow",
            "duration": 3,
            "resolution": "480p",
        }
    )
    lines = [f"vidgate is starting on {base} (data dir: {settings.data_dir})"]
    location = settings.storage.location
    if isinstance(location, S3Location):
        endpoint = settings.storage.endpoint_url or "AWS S3"
        lines.append(f"Videos are kept in s3://{location.bucket}/{location.prefix} ({endpoint})")
    if key:
        lines += ["", "Created your first API key (shown once; keep it):", f"  {key}"]
    else:
        lines += ["", "API keys exist already; create another with: vidgate keys create NAME"]
    lines += [
        "",
        "Try it:",
        f"  curl -s -X POST {base}/api/generate-video \\",
        f"    -H 'x-api-key: {shown_key}' -H 'content-type: application/json' \\",
        f"    -d {shlex.quote(body)}",
        "",
        "then poll with the runId it returns:",
        f"  curl -s '{base}/api/generate-video/status?runId=RUN_ID&modelSlug=testcard-video' \\",
        f"    -H 'x-api-key: {shown_key}'",
        "",
        f"API docs: {base}/docs",
        "",
    ]
    print("\n".join(lines), flush=True)
