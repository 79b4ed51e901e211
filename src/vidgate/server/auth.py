"""API keys from ``x-api-key`` or ``Authorization: Bearer``."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import Headers

from vidgate.server.errors import ApiError
from vidgate.server.state import AppState
from vidgate.store.records import KeyRecord


def presented_key(headers: Headers) -> str | None:
    return _chosen(headers.get("x-api-key"), headers.get("authorization"))


def presented_key_raw(raw: list[tuple[bytes, bytes]]) -> str | None:
    """:func:`presented_key` of an ASGI scope's header lines (names are lower case)."""
    api_key = authorization = None
    for name, value in raw:
        if name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    return _chosen(api_key, authorization)


def _chosen(api_key: str | None, authorization: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate(state: AppState, headers: Headers) -> KeyRecord:
    """The live key these request headers present; a 401 otherwise."""
    return await authenticate_secret(state, presented_key(headers))


async def authenticate_secret(state: AppState, secret: str | None) -> KeyRecord:
    """The live key whose secret this is (as :func:`presented_key` found it); a 401
    otherwise. A key read within the cache's time costs no await."""
    if secret is None:
        raise ApiError(
            401, "missing API key: send it in the x-api-key header or as Authorization: Bearer KEY"
        )
    key = state.store.cached_key(secret)
    if key is None:
        key = await state.store.authenticate(secret)
    if key is None:
        raise ApiError(401, "invalid or revoked API key; create one with `vidgate keys create`")
    return key


async def require_key(request: Request) -> KeyRecord:
    """The routes' dependency: the request's live key."""
    return await authenticate(request.app.state.vidgate, request.headers)
