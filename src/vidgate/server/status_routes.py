"""Where clients learn of a run: the two status routes (with long-poll), the event stream,
and cancel. Waiting is done on run events (:mod:`vidgate.events`): subscribe, then read,
then wait for a newer sequence number. An idle waiter costs no CPU and no queries."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from vidgate import views
from vidgate.events.hub import Watch
from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.common import base_url, find_run, needed, run_reference, state_of
from vidgate.server.errors import ApiError
from vidgate.server.polls import (
    LEGACY_PATH,
    UNIFIED_PATH,
    Shape,
    legacy_params,
    status_response,
    unified_params,
)
from vidgate.server.state import AppState
from vidgate.store.errors import NotFound
from vidgate.store.records import KeyRecord, RunView

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]
_STATUS_ERRORS = schemas.error_responses(400, 401, 404, 503)
LONG_POLL_HEADER = "Vidgate-Long-Poll"
SSE_RETRY_MS = 2000
"""How long an EventSource waits before it reconnects (sent as ``retry:``)."""

WaitSeconds = Annotated[
    int | None, Query(ge=0, le=60, description="extension: long-poll up to N seconds (0-60)")
]


async def _status(
    request: Request,
    key: KeyRecord,
    run_id: str,
    model: str | None,
    wait_s: int | None,
    shape: Shape,
) -> Response:
    """The run's status; with ``wait_s``, held until the run's next event (progress
    included) or until ``wait_s`` has passed. (A poll without ``wait_s`` is answered by
    :mod:`~vidgate.server.fast_path` before it gets here, the same way.)"""
    state = state_of(request)
    with state.store.events.watch(run_id) as watch:
        run = await find_run(state, run_id, key, model)
        if wait_s and not run.status.is_terminal:
            hold = min(wait_s, state.settings.server.max_wait_s)
            if await watch.wait_past(run.seq, hold):
                run = watch.snapshot() or await find_run(state, run_id, key, model)
    # Tells a client that this answer came at the run's next event (or the hold's end),
    # so it may ask again at once, even when the answer came early (progress).
    headers = {LONG_POLL_HEADER: "1"} if wait_s else {}
    return await status_response(state, run, shape, base_url(request, state), headers)


@router.get(
    LEGACY_PATH,
    response_model=schemas.GenerateVideoStatusResponse,
    responses=_STATUS_ERRORS,
    summary="Poll a run (legacy route, needs the model)",
    operation_id="getVideoStatusLegacy",
)
async def legacy_status_route(
    request: Request,
    key: Key,
    runId: Annotated[str | None, needed("Run ID returned by the submit")] = None,
    modelSlug: Annotated[str | None, needed("Model used for the run")] = None,
    model: Annotated[str | None, Query(description="Alias of modelSlug (if it is absent)")] = None,
    waitSeconds: WaitSeconds = None,
) -> Response:
    run_id, slug = legacy_params(runId, modelSlug, model)
    return await _status(request, key, run_id, slug, waitSeconds, "legacy")


@router.get(
    UNIFIED_PATH,
    response_model=schemas.UnifiedVideoStatusResponse,
    responses=_STATUS_ERRORS,
    summary="Poll a run (unified route)",
    operation_id="getVideoStatus",
)
async def unified_status_route(
    request: Request,
    key: Key,
    requestId: Annotated[str | None, needed("Run ID")] = None,
    runId: Annotated[str | None, Query(description="Alias of requestId (if it is absent)")] = None,
    waitSeconds: WaitSeconds = None,
) -> Response:
    run_id = unified_params(requestId, runId)
    return await _status(request, key, run_id, None, waitSeconds, "unified")


@router.get(
    "/api/video/status/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: one per change of the run, ``id:`` its "
            "sequence number, ``data:`` the unified status body; a ``: keep-alive`` comment "
            "every 15 s; the stream ends after the terminal event. Send ``Last-Event-ID`` "
            "to resume: only newer states follow (the current one first if it changed).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        204: {"description": "The run is over and Last-Event-ID names its final state"},
        **_STATUS_ERRORS,
    },
    summary="Follow a run as server-sent events (extension)",
)
async def stream_route(
    request: Request,
    key: Key,
    requestId: Annotated[str | None, needed("Run ID")] = None,
    runId: Annotated[str | None, Query(description="Alias of requestId (if it is absent)")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    state = state_of(request)
    run_id = unified_params(requestId, runId)
    subscription = contextlib.ExitStack()
    watch = subscription.enter_context(state.store.events.watch(run_id))
    try:
        run = await find_run(state, run_id, key)
    except BaseException:
        subscription.close()
        raise
    last_id = _event_id(last_event_id)
    if run.status.is_terminal and run.seq == last_id:
        # The client has the final state: 204 tells an EventSource to stop reconnecting.
        subscription.close()
        return Response(status_code=204)
    events = _events(state, run, base_url(request, state), watch, last_id)
    return StreamingResponse(
        _closing(events, subscription),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event_id(header: str | None) -> int | None:
    """The client's Last-Event-ID; one that is not ours is treated as absent."""
    if header is None or not header.strip().isdigit():
        return None
    return int(header.strip())


async def _events(
    state: AppState, run: RunView, base: str, watch: Watch, last_id: int | None
) -> AsyncIterator[str]:
    yield f"retry: {SSE_RETRY_MS}\n\n"
    if run.seq != last_id:  # new, or resumed after missed changes: the current state first
        yield await _event(state, run, base)
    heartbeat_s = state.settings.server.sse_heartbeat_s
    while not run.status.is_terminal:
        if not await watch.wait_past(run.seq, heartbeat_s):
            yield ": keep-alive\n\n"
            continue
        latest = watch.snapshot() or await state.store.poll_run(run.id)
        if latest is None:  # deleted meanwhile
            return
        run = latest
        yield await _event(state, run, base)


async def _event(state: AppState, run: RunView, base: str) -> str:
    body = await views.status_body(
        state.store, state.storage, run, base=base, url_ttl_s=state.settings.storage.url_ttl_s
    )
    return f"id: {run.seq}\ndata: {views.encode(body).decode()}\n\n"


async def _closing(
    events: AsyncIterator[str], subscription: contextlib.ExitStack
) -> AsyncIterator[str]:
    """The events, then the subscription ends, however the stream ends (a client that
    goes away cancels it)."""
    try:
        async for item in events:
            yield item
    finally:
        subscription.close()


@router.post(
    "/api/generate-video/cancel",
    response_model=schemas.UnifiedVideoStatusResponse,
    responses=schemas.error_responses(400, 401, 404, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.RUN_REFERENCE}},
        }
    },
    summary="Cancel a run (extension); a terminal run is returned as it is",
    operation_id="cancelVideo",
)
async def cancel_route(request: Request, key: Key) -> Response:
    state = state_of(request)
    run_id = await run_reference(request, "to cancel")
    try:
        run = await state.store.cancel(run_id, key.id)
    except NotFound:
        raise ApiError(404, f"run {run_id!r} not found") from None
    return await status_response(state, run, "unified", base_url(request, state))
