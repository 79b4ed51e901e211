"""The operators' dashboard at ``/ui``: server-rendered pages (Jinja2 templates and static
files in this package, no build step) behind an admin key's sign-in. None of its routes
is part of the API's schema (``/openapi.json``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

from vidgate.ui import live, overview, pages, signin
from vidgate.ui.sessions import LoginBrake

STATIC = Path(__file__).with_name("static")


def install(app: FastAPI) -> None:
    """Add the dashboard's routes and static files to ``app``."""
    app.state.ui_brake = LoginBrake()
    for module in (signin, pages, overview, live):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    async def sign_in(_: Request, exc: Exception) -> Response:
        return signin.sign_in_redirect()

    app.add_exception_handler(signin.SignInNeeded, sign_in)
