"""A run's webhook deliveries (extension): the delivery log, and sending the newest one again.
Deliveries themselves are made by the workers' sender (:mod:`vidgate.worker.webhooks`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.common import get_run, needed, run_reference, state_of
from vidgate.server.errors import ApiError
from vidgate.store.errors import DeliveryInFlight
from vidgate.store.records import DeliveryRecord, KeyRecord
from vidgate.views import iso

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]


def _delivery(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "type": delivery.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "createdAt": iso(delivery.created_at),
        "nextAttemptAt": iso(delivery.next_attempt_at),
        "deliveredAt": iso(delivery.delivered_at),
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "log": [
            {
                "at": iso(attempt.get("at")),
                "statusCode": attempt.get("statusCode"),
                "error": attempt.get("error"),
                "durationMs": attempt.get("durationMs"),
            }
            for attempt in delivery.log
        ],
    }


@router.get(
    "/api/generate-video/webhooks",
    response_model=schemas.WebhookDeliveries,
    responses=schemas.error_responses(400, 401, 404, 503),
    summary="A run's webhook deliveries and every attempt (extension)",
    operation_id="getWebhookDeliveries",
)
async def deliveries_route(
    request: Request,
    key: Key,
    runId: Annotated[str | None, needed("Run ID returned by the submit")] = None,
) -> JSONResponse:
    state = state_of(request)
    run = await get_run(state, runId, key)
    deliveries = await state.store.deliveries_of(run.id)
    return JSONResponse(
        {
            "runId": run.id,
            "webhookUrl": run.webhook_url,
            "deliveries": [_delivery(d) for d in deliveries],
        }
    )


@router.post(
    "/api/generate-video/webhooks/redeliver",
    status_code=202,
    response_model=schemas.WebhookDelivery,
    responses={
        **schemas.error_responses(400, 401, 404, 503),
        409: {
            "model": schemas.Error,
            "description": "The run has no webhook delivery yet, or an attempt is in flight",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.RUN_REFERENCE}},
        }
    },
    summary="Send a run's newest webhook again, with the same webhook-id (extension)",
)
async def redeliver_route(request: Request, key: Key) -> JSONResponse:
    state = state_of(request)
    run_id = await run_reference(request, "whose webhook to send again")
    run = await get_run(state, run_id, key)
    try:
        delivery = await state.store.redeliver(run.id)
    except DeliveryInFlight as exc:
        raise ApiError(409, str(exc)) from None
    if delivery is None:
        if run.webhook_url is None:
            raise ApiError(
                409,
                f"run {run.id!r} has no webhook: it was submitted without a 'webhookUrl' "
                "and its key has no default webhook URL",
            )
        raise ApiError(
            409,
            f"run {run.id!r} has no webhook delivery yet: none of the events it subscribed "
            f"to has happened (status {run.status.value}); try again once it has",
        )
    return JSONResponse(_delivery(delivery), status_code=202)
