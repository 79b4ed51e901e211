"""Serving the app with uvicorn until it is told to stop, or until its worker stops."""

from __future__ import annotations

import contextlib
import json
import shlex

import uvicorn

from vidgate.config import Settings
from vidgate.server.app import Background, create_app
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
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.server.host,
            port=settings.server.port,
            http=protocol_with_header_timeout(settings.server.header_timeout_s),
            log_level=log_level,
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
