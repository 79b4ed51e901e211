"""API keys from ``x-api-key`` or ``Authorization: Bearer``."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import Headers

from vidgate.server.errors import ApiError
from vidgate.server.state import AppState
from vidgate.store.records import KeyRecord


def presented_key(headers: Headers) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate(state: AppState, headers: Headers) -> KeyRecord:
    """The live key these request headers present; a 401 otherwise."""
    secret = presented_key(headers)
    if secret is None:
        raise ApiError(
            401, "missing API key: send it in the x-api-key header or as Authorization: Bearer KEY"
        )
    key = await state.store.authenticate(secret)
    if key is None:
        raise ApiError(401, "invalid or revoked API key; create one with `vidgate keys create`")
    return key


async def require_key(request: Request) -> KeyRecord:
    """The routes' dependency: the request's live key."""
    return await authenticate(request.app.state.vidgate, request.headers)
