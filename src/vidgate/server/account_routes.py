"""A key's account: its balance (what is left of today's budget), its usage by day and model,
and its recent runs (upstream's ``recover``). Budgets themselves are enforced at submit, in
the transaction that stores the run (:mod:`vidgate.store.budgets`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from vidgate.runs.days import DAY_PATTERN, BadDay, day_bounds, parse_day, usage_range
from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.common import state_of
from vidgate.server.errors import ApiError
from vidgate.store.records import Balance, KeyRecord, UsageRow
from vidgate.views import iso

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]
USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366
DATE: dict[str, Any] = {"format": "date", "pattern": f"^{DAY_PATTERN.pattern}$"}
RECOVER_DEFAULT = 10
RECOVER_MAX = 50
UNLIMITED = "Infinity"
"""``usd_balance`` of a key without a budget: a string a client's number parser reads as
more than any price."""


def _usd(amount: float) -> str:
    return f"{amount:.8f}"


def balance_body(balance: Balance) -> dict[str, Any]:
    remaining = balance.remaining_usd
    body: dict[str, Any] = {
        "usd_balance": UNLIMITED if remaining is None else _usd(remaining),
        "nano_balance": "0",
        "spent_usd_today": _usd(balance.spent_usd),
    }
    if balance.budget_usd is not None:
        body["budget_usd_per_day"] = _usd(balance.budget_usd)
    return body


@router.post(
    "/api/check-balance",
    response_model=schemas.BalanceBody,
    responses=schemas.error_responses(401, 503),
    summary="What is left of the key's budget for today",
)
async def check_balance(request: Request, key: Key) -> JSONResponse:
    state = state_of(request)
    current = await state.store.get_key(key.id)  # limits as they are now, not as cached
    return JSONResponse(balance_body(await state.store.balance(current)))


@router.get(
    "/api/v1/usage",
    response_model=schemas.UsageBody,
    responses=schemas.error_responses(400, 401, 503),
    summary="The key's runs, seconds of video and cost by UTC day and model",
)
async def usage_route(
    request: Request,
    key: Key,
    since: Annotated[
        str | None,
        Query(
            alias="from",
            description="First UTC day, YYYY-MM-DD (default: the last 'days' up to today)",
            json_schema_extra=DATE,
        ),
    ] = None,
    days: Annotated[
        int, Query(ge=1, le=USAGE_MAX_DAYS, description="How many days from 'from'")
    ] = USAGE_DEFAULT_DAYS,
) -> JSONResponse:
    today = dt.datetime.now(dt.UTC).date()
    try:
        first, last = usage_range(parse_day(since, "from"), days, today)
    except BadDay as exc:
        raise ApiError(400, str(exc)) from None
    rows = await state_of(request).store.usage(*day_bounds(first, last), api_key_id=key.id)
    return JSONResponse(usage_body(first, last, rows))


def usage_body(first: dt.date, last: dt.date, rows: list[UsageRow]) -> dict[str, Any]:
    data = [
        {"date": r.day, "model": r.model, "runs": r.runs, "seconds": r.seconds, "cost": r.cost_usd}
        for r in rows
    ]
    return {
        "object": "usage",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "data": data,
        "totals": {
            "runs": sum(r.runs for r in rows),
            "seconds": round(sum(r.seconds for r in rows), 3),
            "cost": round(sum(r.cost_usd for r in rows), 6),
        },
    }


@router.get(
    "/api/generate-video/recover",
    response_model=schemas.RecoverBody,
    responses=schemas.error_responses(400, 401, 503),
    summary="The key's recent runs, newest first",
)
async def recover_route(
    request: Request,
    key: Key,
    limit: Annotated[
        int, Query(ge=1, le=RECOVER_MAX, description=f"How many runs (1 to {RECOVER_MAX})")
    ] = RECOVER_DEFAULT,
    model: Annotated[str | None, Query(description="Only this model's runs")] = None,
) -> JSONResponse:
    runs = await state_of(request).store.recent_runs(key.id, limit, model or None)
    data = [
        {
            "runId": run.id,
            "id": run.id,
            "model": run.model,
            "status": run.status.flat,
            "createdAt": iso(run.created_at),
        }
        for run in runs
    ]
    return JSONResponse({"data": data})
