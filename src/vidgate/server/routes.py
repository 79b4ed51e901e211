"""The video API routes: thin over runs/ (validation) and store/ (persistence). The status
routes, their long-poll and event stream are in :mod:`vidgate.server.status_routes`."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from vidgate.netguard import UnsafeTarget, check_public
from vidgate.runs.errors import ContentPolicyViolation, InvalidRequest
from vidgate.runs.routing import ProviderNotAllowed
from vidgate.runs.submit import prepare_run
from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.common import base_url, find_run, needed, output_links, read_json, state_of
from vidgate.server.errors import DEFAULT_TYPES, ApiError
from vidgate.server.state import AppState
from vidgate.storage.base import BadSignature, content_type_for
from vidgate.storage.local import LocalStorage
from vidgate.store.errors import IdempotencyConflict, OverBudget, StoreUnavailable, TooManyInFlight
from vidgate.store.records import KeyRecord, NewRun
from vidgate.views import encode, iso, submit_response

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]
SUBMIT_PATH = "/api/generate-video"
IDEMPOTENCY_KEY_MAX = 200


@router.post(
    SUBMIT_PATH,
    status_code=202,
    response_model=schemas.SubmitResponse,
    responses={
        202: {"description": "The run, accepted", "links": schemas.RUN_LINKS},
        **schemas.error_responses(400, 401, 402, 409, 429, 503, submit=True),
    },
    operation_id="submitVideo",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}}
            },
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "extension: a repeat within 24 h returns the first answer "
                "(Idempotent-Replayed: true); the same key with another body is 409",
                "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
            }
        ],
    },
    summary="Submit a video generation run",
)
async def submit(request: Request, key: Key) -> Response:
    return await accept_submit(state_of(request), request, key)


async def accept_submit(state: AppState, request: Request, key: KeyRecord) -> Response:
    """A submit by ``key``: the new run, committed (or the first run of its idempotency
    key). The route and the fast path (:mod:`vidgate.server.fast_path`) both answer with
    this. A submit that is refused (or fails) gives its rate-limit token back, except one
    refused for its URLs, whose check cost DNS lookups. On PostgreSQL the buckets are in
    the database (shared by every API process); an outage there is a 503 like any other."""
    wait_s = await state.limiter.take(key.id)
    if wait_s is not None:
        state.metrics.refused(DEFAULT_TYPES[429])
        retry = max(1, math.ceil(wait_s))
        raise ApiError(
            429,
            f"rate limit exceeded: at most {state.settings.limits.submits_per_minute:g} submits "
            f"a minute per key; retry in {retry} s. Polling is not limited.",
            headers={"Retry-After": str(retry)},
        )
    try:
        return await _accept(state, request, key)
    except TargetRefused as refusal:
        state.metrics.refused(refusal.type)
        raise  # it cost DNS lookups: the token is kept, so that refusals stay limited
    except Exception as exc:
        if isinstance(exc, ApiError):
            state.metrics.refused(exc.type)
        # A refund lost to a database outage costs the key one submit; the refusal (or the
        # outage) stays the answer.
        with contextlib.suppress(StoreUnavailable):
            await state.limiter.refund(key.id)
        raise


class TargetRefused(ApiError):
    """A submit's ``imageUrl`` or webhook URL points inside the network."""


async def _accept(state: AppState, request: Request, key: KeyRecord) -> Response:
    body = await read_json(request, state.settings.server.max_body_bytes)
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise ApiError(
            400, f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} characters"
        )
    try:
        new = prepare_run(
            body,
            api_key_id=key.id,
            catalog=state.catalog,
            limits=state.limits,
            moderation=state.moderation,
            now=time.time(),
            idempotency_key=idempotency_key,
            default_webhook_url=key.webhook_url,
            allowed_providers=key.provider_list,
        )
    except ContentPolicyViolation as exc:
        raise ApiError(400, str(exc), type="CONTENT_POLICY_VIOLATION") from None
    except ProviderNotAllowed as exc:
        raise ApiError(403, str(exc)) from None
    except InvalidRequest as exc:
        raise ApiError(400, str(exc)) from None
    await check_targets(state, new)
    try:
        run, created = await state.store.submit(
            new, idempotency_ttl_s=state.settings.limits.idempotency_ttl_s, limited=key.limited
        )
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc)) from None
    except OverBudget as exc:
        raise ApiError(
            402,
            f"insufficient balance: {exc}. Wait for the budget to renew at 00:00 UTC, choose a "
            "cheaper model, resolution or duration, or ask the operator to raise it (vidgate "
            f"keys update {key.name} --budget-usd-per-day USD)",
        ) from None
    except TooManyInFlight as exc:
        retry = state.settings.server.status_retry_after_s
        raise ApiError(
            429,
            f"too many runs in flight: {exc}. Submit again once one has finished (or cancel "
            f"one), or ask the operator to raise it (vidgate keys update {key.name} "
            "--max-in-flight N)",
            headers={"Retry-After": str(retry)},
        ) from None
    remaining = None
    if key.budget_usd_per_day is not None:
        # The run is committed: a database outage now must not turn its 202 into a 503 (a
        # client would submit again); the balance is then left out (null).
        with contextlib.suppress(StoreUnavailable):
            remaining = (await state.store.balance(key)).remaining_usd
    headers = {} if created else {"Idempotent-Replayed": "true"}
    body = submit_response(run, remaining_usd=remaining)
    return Response(encode(body), 202, headers, "application/json")


async def check_targets(state: AppState, new: NewRun) -> None:
    """A 400 if the run's ``imageUrl`` or webhook URL points inside the network (unless
    allowed): refused at submit, so that no accepted run fails for it later. They are
    checked again when fetched or sent, against the address connected to."""
    image_url = new.request.get("image_url")
    spec = state.catalog.models.get(new.model)
    if image_url and spec is not None and spec.options.get("allow_private_hosts") is not True:
        try:
            await check_public(image_url)
        except UnsafeTarget as exc:
            raise TargetRefused(
                400,
                f"the imageUrl {exc}; use a public http(s) URL or send the image as "
                f"'imageDataUrl', or set allow_private_hosts = true in the options of model "
                f"{new.model!r} for images on your own network",
            ) from None
    if new.webhook_url is not None and not state.settings.webhooks.allow_private_hosts:
        try:
            await check_public(new.webhook_url)
        except UnsafeTarget as exc:
            raise TargetRefused(
                400,
                f"the webhook URL {exc}; use a public https URL, or set "
                "[webhooks] allow_private_hosts = true for receivers on your own network",
            ) from None


VARIANTS = ("video", "thumbnail")


@router.get(
    "/api/generate-video/content",
    responses={
        302: {"description": "Redirect to the signed URL of the video (or its thumbnail)"},
        **schemas.error_responses(400, 401, 404, 410, 503),
    },
    response_class=RedirectResponse,
    status_code=302,
    summary="The finished video or its thumbnail (redirects to its signed URL)",
)
async def content_route(
    request: Request,
    key: Key,
    runId: Annotated[str | None, needed("Run ID returned by the submit")] = None,
    model: Annotated[str | None, Query(description="Model used for the run")] = None,
    modelSlug: Annotated[str | None, Query(description="Alias of model")] = None,
    variant: Annotated[
        str | None,
        Query(
            description="video (default) or thumbnail (the poster frame, a JPEG)",
            json_schema_extra={"enum": list(VARIANTS)},
        ),
    ] = None,
) -> Response:
    state = state_of(request)
    chosen = variant or "video"
    if chosen not in VARIANTS:
        raise ApiError(
            400,
            f"variant {variant!r} is not available here; use variant=video (the default) or "
            "variant=thumbnail",
        )
    run = await find_run(state, runId, key, model or modelSlug)
    if run.output_deleted_at is not None:
        raise ApiError(410, gone_message(state, run.id, run.output_deleted_at))
    links = output_links(base_url(request, state), state, run)
    if links is None:
        raise ApiError(404, f"run {run.id!r} has no video yet (status {run.status.value})")
    if chosen == "video":
        return RedirectResponse(links.video.url, status_code=302)
    if links.thumbnail is None:
        raise ApiError(
            404,
            f"run {run.id!r} has no thumbnail (its poster frame could not be made); "
            "variant=video serves the video itself",
        )
    return RedirectResponse(links.thumbnail.url, status_code=302)


def gone_message(state: AppState, run_id: str, deleted_at: float) -> str:
    days = state.settings.retention.videos_days
    policy = f"keeps videos {days} days after a run completes" if days else "deletes old videos"
    return (
        f"run {run_id!r} completed, but its video and thumbnail were deleted on "
        f"{iso(deleted_at)}: this server's retention policy ([retention] videos_days) "
        f"{policy}. Download videos before then; submit the request again for a new one"
    )


@router.get(
    "/api/v1/video-models",
    response_model=schemas.ModelList,
    summary="The model catalog (authentication optional)",
)
async def models_route(request: Request) -> JSONResponse:
    state = state_of(request)
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
    exp: Annotated[str | None, needed("Expiry (Unix seconds)")] = None,
    sig: Annotated[str | None, needed("Signature")] = None,
) -> Response:
    state = state_of(request)
    if not isinstance(state.storage, LocalStorage):
        raise ApiError(
            404,
            "this server keeps videos in an S3 bucket, which serves them itself; fetch the "
            "run's status for the video's URL",
        )
    try:
        path = state.storage.open_signed(key, exp, sig)
    except BadSignature as exc:
        raise ApiError(403, str(exc)) from None
    except FileNotFoundError:
        raise ApiError(404, "this file no longer exists") from None
    return FileResponse(path, media_type=content_type_for(key))
