"""Serving the app with uvicorn until it is told to stop, or until its worker stops."""

from __future__ import annotations

import contextlib

import uvicorn

from vidgate.config import Settings
from vidgate.server.app import Background, create_app
from vidgate.server.slow_clients import protocol_with_header_timeout


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
