"""The video API routes: thin over runs/ (validation) and store/ (persistence)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from vidgate.runs.errors import ContentPolicyViolation, InvalidRequest
from vidgate.runs.status import Status
from vidgate.runs.submit import prepare_run
from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.errors import ApiError
from vidgate.server.state import AppState
from vidgate.server.views import (
    OutputLink,
    iso,
    legacy_status,
    submit_response,
    unified_status,
)
from vidgate.storage.local import BadSignature, content_type_for
from vidgate.store.errors import IdempotencyConflict, NotFound
from vidgate.store.records import KeyRecord, RunRecord

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]
_STATUS_ERRORS = schemas.error_responses(400, 401, 404)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.vidgate
    return state


def _base_url(request: Request, state: AppState) -> str:
    return state.settings.server.public_base_url or str(request.base_url).rstrip("/")


async def _read_json(request: Request, limit: int) -> Any:
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
        raise ApiError(400, "the request body is empty; send a JSON object with at least 'model'")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
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


@router.post(
    "/api/generate-video",
    status_code=202,
    response_model=schemas.SubmitResponse,
    responses=schemas.error_responses(400, 401, 409, 429, submit=True),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.SubmitRequest.model_json_schema()}},
        }
    },
    summary="Submit a video generation run",
)
async def submit(request: Request, key: Key) -> JSONResponse:
    state = _state(request)
    wait_s = state.limiter.take(key.id)
    if wait_s is not None:
        retry = max(1, math.ceil(wait_s))
        raise ApiError(
            429,
            f"rate limit exceeded: at most {state.settings.limits.submits_per_minute:g} submits "
            f"a minute per key; retry in {retry} s. Polling is not limited.",
            headers={"Retry-After": str(retry)},
        )
    body = await _read_json(request, state.settings.server.max_body_bytes)
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise ApiError(400, "the Idempotency-Key header must be 1 to 200 characters")
    try:
        new = prepare_run(
            body,
            api_key_id=key.id,
            catalog=state.catalog,
            limits=state.limits,
            moderation=state.moderation,
            now=time.time(),
            idempotency_key=idempotency_key,
        )
    except ContentPolicyViolation as exc:
        raise ApiError(400, str(exc), type="CONTENT_POLICY_VIOLATION") from None
    except InvalidRequest as exc:
        raise ApiError(400, str(exc)) from None
    try:
        run, created = await state.store.submit(
            new, idempotency_ttl_s=state.settings.limits.idempotency_ttl_s
        )
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc)) from None
    if created and state.worker is not None:
        state.worker.wake()
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return JSONResponse(submit_response(run), status_code=202, headers=headers)


async def _find(
    state: AppState, run_id: str | None, key: KeyRecord, model: str | None
) -> RunRecord:
    if not run_id:
        raise ApiError(400, "'runId' is required")
    try:
        run = await state.store.get(run_id, key.id)
    except NotFound:
        raise ApiError(404, f"run {run_id!r} not found") from None
    if model is not None and model != run.model:
        raise ApiError(404, f"run {run_id!r} not found for model {model!r}")
    return run


async def _await_change(state: AppState, run: RunRecord, wait_s: int | None) -> RunRecord:
    """Long-poll: hold until the run's status changes or ``wait_s`` passes.

    Only the status is read while waiting; the whole run once, at the end.
    """
    if not wait_s or run.status.is_terminal:
        return run
    deadline = time.monotonic() + min(wait_s, state.settings.server.max_wait_s)
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        if await state.store.status_of(run.id) is not run.status:
            break
    return await state.store.get(run.id)


def _link(request: Request, state: AppState, run: RunRecord) -> OutputLink | None:
    if run.status is not Status.COMPLETED or run.output_key is None:
        return None
    url, expires = state.storage.signed_url(
        run.output_key,
        _base_url(request, state),
        state.settings.storage.url_ttl_s,
        issued_from=run.completed_at,
    )
    return OutputLink(url, expires)


async def _status_response(
    request: Request, state: AppState, run: RunRecord, shape: str
) -> JSONResponse:
    position = None
    if run.status is Status.IN_QUEUE:
        provider_position = (run.provider_state or {}).get("queue_position")
        if run.provider_request_id is not None:
            position = provider_position if isinstance(provider_position, int) else None
        else:
            position = await state.store.queue_position(run)
    render = legacy_status if shape == "legacy" else unified_status
    headers = {}
    if not run.status.is_terminal:
        headers["Retry-After"] = str(state.settings.server.status_retry_after_s)
    return JSONResponse(render(run, _link(request, state, run), position), headers=headers)


WaitSeconds = Annotated[
    int | None, Query(ge=0, le=60, description="extension: long-poll up to N seconds (0-60)")
]


@router.get(
    "/api/generate-video/status",
    response_model=schemas.GenerateVideoStatusResponse,
    responses=_STATUS_ERRORS,
    summary="Poll a run (legacy route, needs the model)",
)
async def legacy_status_route(
    request: Request,
    key: Key,
    runId: Annotated[str | None, Query(description="Run ID returned by the submit")] = None,
    modelSlug: Annotated[str | None, Query(description="Model used for the run")] = None,
    model: Annotated[str | None, Query(description="Alias of modelSlug")] = None,
    waitSeconds: WaitSeconds = None,
) -> JSONResponse:
    state = _state(request)
    slug = modelSlug or model
    if not runId:
        raise ApiError(400, "'runId' is required")
    if not slug:
        raise ApiError(400, "'modelSlug' is required (the model the run was submitted with)")
    run = await _find(state, runId, key, slug)
    run = await _await_change(state, run, waitSeconds)
    return await _status_response(request, state, run, "legacy")


@router.get(
    "/api/video/status",
    response_model=schemas.UnifiedVideoStatusResponse,
    responses=_STATUS_ERRORS,
    summary="Poll a run (unified route)",
)
async def unified_status_route(
    request: Request,
    key: Key,
    requestId: Annotated[str | None, Query(description="Run ID")] = None,
    runId: Annotated[str | None, Query(description="Alias of requestId")] = None,
    waitSeconds: WaitSeconds = None,
) -> JSONResponse:
    state = _state(request)
    run_id = requestId or runId
    if not run_id:
        raise ApiError(400, "'requestId' (or 'runId') is required")
    run = await _find(state, run_id, key, None)
    run = await _await_change(state, run, waitSeconds)
    return await _status_response(request, state, run, "unified")


@router.post(
    "/api/generate-video/cancel",
    response_model=schemas.UnifiedVideoStatusResponse,
    responses=schemas.error_responses(400, 401, 404),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.CancelRequest.model_json_schema()}},
        }
    },
    summary="Cancel a run (extension); a terminal run is returned as it is",
)
async def cancel_route(request: Request, key: Key) -> JSONResponse:
    state = _state(request)
    body = await _read_json(request, 64 * 1024)
    run_id = body.get("runId") or body.get("requestId") if isinstance(body, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise ApiError(400, "send a JSON object with the 'runId' to cancel")
    try:
        run = await state.store.cancel(run_id, key.id)
    except NotFound:
        raise ApiError(404, f"run {run_id!r} not found") from None
    return await _status_response(request, state, run, "unified")


@router.get(
    "/api/generate-video/content",
    responses={
        302: {"description": "Redirect to the video's signed URL"},
        **schemas.error_responses(400, 401, 404),
    },
    response_class=RedirectResponse,
    status_code=302,
    summary="The finished video (redirects to its signed URL)",
)
async def content_route(
    request: Request,
    key: Key,
    runId: Annotated[str | None, Query()] = None,
    model: Annotated[str | None, Query()] = None,
    modelSlug: Annotated[str | None, Query()] = None,
) -> Response:
    state = _state(request)
    run = await _find(state, runId, key, model or modelSlug)
    link = _link(request, state, run)
    if link is None:
        raise ApiError(404, f"run {run.id!r} has no video yet (status {run.status.value})")
    return RedirectResponse(link.url, status_code=302)


@router.get(
    "/api/v1/video-models",
    response_model=schemas.ModelList,
    summary="The model catalog (authentication optional)",
)
async def models_route(request: Request) -> JSONResponse:
    state = _state(request)
    data = [spec.to_json() for spec in state.catalog]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "meta": {"count": len(data), "generated_at": iso(time.time())},
        }
    )


@router.get(
    "/files/{key:path}",
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The file (Range supported)"},
        206: {"description": "Partial content"},
        **schemas.error_responses(403, 404),
    },
    response_class=FileResponse,
    summary="A stored video, by signed URL",
)
async def files_route(
    request: Request,
    key: str,
    exp: Annotated[str | None, Query()] = None,
    sig: Annotated[str | None, Query()] = None,
) -> Response:
    state = _state(request)
    try:
        path = state.storage.open_signed(key, exp, sig)
    except BadSignature as exc:
        raise ApiError(403, str(exc)) from None
    except FileNotFoundError:
        raise ApiError(404, "this file no longer exists") from None
    return FileResponse(path, media_type=content_type_for(key))


@router.get("/healthz", summary="Liveness and database check")
async def healthz(request: Request) -> dict[str, Any]:
    state = _state(request)
    counts = await state.store.count_by_status()
    return {"status": "ok", "runs": counts, "worker": state.worker is not None}
