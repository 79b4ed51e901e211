"""What the route modules share: the app state, request bodies, finding a run."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Query, Request

from vidgate import views
from vidgate.server.errors import ApiError
from vidgate.server.state import AppState
from vidgate.store.errors import NotFound
from vidgate.store.records import KeyRecord, RunRecord, RunView
from vidgate.views import OutputLinks


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.vidgate
    return state


def base_url(request: Request, state: AppState) -> str:
    return state.settings.server.public_base_url or str(request.base_url).rstrip("/")


REQUIRED = "x-vidgate-required"
"""Marks a query parameter the API needs, though the route reads it as optional to answer
its absence itself (see :func:`vidgate.server.app.create_app`'s schema)."""


def needed(description: str) -> Any:
    """A query parameter that must be given and not be empty."""
    return Query(description=description, json_schema_extra={REQUIRED: True, "minLength": 1})


async def read_json(
    request: Request, limit: int, expected: str = "a JSON object with at least 'model'"
) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            400,
            f"request body is {declared} bytes; the limit is {limit} bytes. "
            "Host large images and send 'imageUrl' instead.",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(400, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, f"the request body is empty; send {expected}")
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the request body is not valid JSON: {exc.msg} at line "
            f"{exc.lineno} column {exc.colno}",
        ) from None
    except ValueError as exc:  # NaN / Infinity
        raise ApiError(400, str(exc)) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"the request body contains {name}, which is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""What ``json.loads(text, parse_constant=...)`` would make afresh for every body."""


async def run_reference(request: Request, purpose: str) -> str:
    """The run a request body names (``schemas.RUN_REFERENCE``): ``runId``, or its alias
    ``requestId``; each one sent must be a non-empty string."""
    expected = f"a JSON object with the 'runId' {purpose}"
    body = await read_json(request, 64 * 1024, expected)
    if not isinstance(body, dict):
        raise ApiError(400, f"send {expected}")
    for name in ("runId", "requestId"):
        value = body.get(name, "-")
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"'{name}' must be a run id (a non-empty string); send {expected}")
    run_id = body.get("runId") or body.get("requestId")
    if run_id is None:
        raise ApiError(400, f"send {expected}")
    return str(run_id)


async def find_run(
    state: AppState, run_id: str | None, key: KeyRecord, model: str | None = None
) -> RunView:
    """The run as a poll reads it (never its request); a 404 unless ``key`` owns it (and it
    is of ``model``, when given)."""
    if not run_id:
        raise ApiError(400, "'runId' is required")
    run = await state.store.poll_run(run_id, key.id)
    if run is None:
        raise ApiError(404, f"run {run_id!r} not found")
    if model is not None and model != run.model:
        raise ApiError(404, f"run {run_id!r} not found for model {model!r}")
    return run


async def get_run(state: AppState, run_id: str | None, key: KeyRecord) -> RunRecord:
    """The whole run (its request too); a 404 unless ``key`` owns it."""
    if not run_id:
        raise ApiError(400, "'runId' is required")
    try:
        return await state.store.get(run_id, key.id)
    except NotFound:
        raise ApiError(404, f"run {run_id!r} not found") from None


def output_links(base: str, state: AppState, run: RunView) -> OutputLinks | None:
    return views.output_links(state.storage, run, base, state.settings.storage.url_ttl_s)
