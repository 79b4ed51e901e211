"""Signing in to the dashboard with an admin key, and out; the dependency that every other
dashboard route takes (see :mod:`vidgate.ui.sessions` for the cookie and the form token)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from vidgate.logs import event
from vidgate.server.common import state_of
from vidgate.store.records import KeyRecord
from vidgate.ui import sessions
from vidgate.ui.render import SECURITY_HEADERS, page

router = APIRouter(include_in_schema=False)
log = logging.getLogger("vidgate.ui")
FORM_MAX_BYTES = 16 * 1024
LOGIN_PATH = "/ui/login"


class SignInNeeded(Exception):
    """The request has no valid dashboard session."""


async def require_admin(request: Request) -> KeyRecord:
    """The admin key signed in to this browser; otherwise the page sends it to sign in."""
    key = await sessions.session_key(state_of(request), request)
    if key is None:
        raise SignInNeeded
    return key


Admin = Annotated[KeyRecord, Depends(require_admin)]


def brake_of(request: Request) -> sessions.LoginBrake:
    brake: sessions.LoginBrake = request.app.state.ui_brake
    return brake


def sign_in_redirect() -> Response:
    return RedirectResponse(LOGIN_PATH, status_code=303, headers=SECURITY_HEADERS)


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the first value of each); a form past
    :data:`FORM_MAX_BYTES` is read as empty, which every form here refuses."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


@router.get(LOGIN_PATH)
async def login_form(request: Request) -> Response:
    state = state_of(request)
    if await sessions.session_key(state, request) is not None:
        return RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)
    return page(request, state, "login.html", {"title": "Sign in", "error": None})


@router.post(LOGIN_PATH)
async def login(request: Request) -> Response:
    state = state_of(request)
    form = await read_form(request)

    def refuse(status_code: int, error: str, headers: dict[str, str] | None = None) -> Response:
        context = {"title": "Sign in", "error": error}
        return page(request, state, "login.html", context, status_code=status_code, headers=headers)

    csrf = sessions.csrf_refusal(state, request, form.get(sessions.CSRF_FIELD))
    if csrf is not None:
        return refuse(403, csrf)
    client = request.client.host if request.client else "unknown"
    wait_s = brake_of(request).retry_after_s(client)
    if wait_s is not None:
        message = f"too many failed sign-ins from this address; try again in {wait_s} s"
        return refuse(429, message, {"Retry-After": str(wait_s)})
    secret = form.get("key", "").strip()
    if not secret:
        return refuse(
            400, "enter an admin API key (make one with `vidgate keys create NAME --admin`)"
        )
    key = await state.store.authenticate(secret)
    if key is None:
        brake_of(request).failed(client)
        event(log, "ui.login_failed", logging.WARNING, client=client, reason="unknown key")
        return refuse(
            401,
            "this key is not valid, or it was revoked; check it with `vidgate keys list` on "
            "the server, or make an admin key with `vidgate keys create NAME --admin`",
        )
    if not key.admin:
        event(log, "ui.login_failed", logging.WARNING, client=client, reason="not admin")
        return refuse(
            403,
            f"the key {key.name!r} is an API key but not an admin key, so it cannot open "
            "the dashboard; sign in with a key made by `vidgate keys create NAME --admin`",
        )
    event(log, "ui.login", logging.INFO, client=client, key=key.name)
    response = RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)
    token = await sessions.session_token(state, key)
    ttl_s = state.settings.ui.session_ttl_s
    sessions.set_cookie(response, request, state, sessions.SESSION_COOKIE, token, ttl_s)
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    state = state_of(request)
    form = await read_form(request)
    csrf = sessions.csrf_refusal(state, request, form.get(sessions.CSRF_FIELD))
    if csrf is not None:
        context = {"title": "Not signed out", "message": csrf}
        return page(request, state, "message.html", context, status_code=403)
    response = sign_in_redirect()
    response.delete_cookie(
        sessions.SESSION_COOKIE,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=sessions.secure_cookies(state, request),
    )
    return response
