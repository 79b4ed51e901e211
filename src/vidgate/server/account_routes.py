"""A key's account: its balance (what is left of today's budget), its usage by day and model,
and its recent runs (upstream's ``recover``). Budgets themselves are enforced at submit, in
the transaction that stores the run (:mod:`vidgate.store.budgets`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from vidgate.server import schemas
from vidgate.server.auth import require_key
from vidgate.server.common import state_of
from vidgate.server.errors import ApiError
from vidgate.store.budgets import DAY_S
from vidgate.store.records import Balance, KeyRecord, UsageRow
from vidgate.views import iso

router = APIRouter()
Key = Annotated[KeyRecord, Depends(require_key)]
USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366
DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE: dict[str, Any] = {"format": "date", "pattern": f"^{DAY_PATTERN.pattern}$"}
RECOVER_DEFAULT = 10
RECOVER_MAX = 50
UNLIMITED = "Infinity"
"""``usd_balance`` of a key without a budget: a string a client's number parser reads as
more than any price."""


class BalanceBody(schemas._Wire):
    usd_balance: str = Field(
        description="What is left of the key's budget for today (UTC), in USD, as a string; "
        f"{UNLIMITED!r} for a key without a budget"
    )
    nano_balance: str = Field(description="Always '0': this gateway takes no Nano")
    budget_usd_per_day: str | None = Field(None, description="extension: the daily budget")
    spent_usd_today: str = Field(description="extension: cost of today's runs (UTC)")


class UsageEntry(schemas._Wire):
    date: str = Field(description="UTC day, YYYY-MM-DD")
    model: str
    runs: int = Field(description="Runs submitted that day")
    seconds: float = Field(description="Seconds of video made (completed runs)")
    cost: float = Field(description="USD: final costs, and estimates of unfinished runs")


class UsageTotals(schemas._Wire):
    runs: int
    seconds: float
    cost: float


class UsageBody(schemas._Wire):
    object: Literal["usage"]
    from_: str = Field(alias="from")
    to: str
    data: list[UsageEntry]
    totals: UsageTotals


class RecoveredRun(schemas._Wire):
    runId: str
    id: str
    model: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    createdAt: str


class RecoverBody(schemas._Wire):
    data: list[RecoveredRun]


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
    response_model=BalanceBody,
    responses=schemas.error_responses(401, 503),
    summary="What is left of the key's budget for today",
)
async def check_balance(request: Request, key: Key) -> JSONResponse:
    state = state_of(request)
    current = await state.store.get_key(key.id)  # limits as they are now, not as cached
    return JSONResponse(balance_body(await state.store.balance(current)))


@router.get(
    "/api/v1/usage",
    response_model=UsageBody,
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
    first, last = usage_range(parse_day(since, "from"), days, today)
    rows = await state_of(request).store.usage(*day_bounds(first, last), api_key_id=key.id)
    return JSONResponse(usage_body(first, last, rows))


def parse_day(text: str | None, name: str) -> dt.date | None:
    """A ``YYYY-MM-DD`` day; ApiError(400) for anything else."""
    if text is None:
        return None
    try:
        if not DAY_PATTERN.fullmatch(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            400, f"'{name}' must be a day as YYYY-MM-DD, e.g. 2026-01-31; got {text!r}"
        ) from None


def usage_range(since: dt.date | None, days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of a usage query: ``days`` days from ``since``, or up to today."""
    first = since or today - dt.timedelta(days - 1)
    try:
        return first, first + dt.timedelta(days - 1)
    except OverflowError:
        return first, dt.date.max


def day_bounds(first: dt.date, last: dt.date) -> tuple[float, float]:
    """``[since, until)`` in Unix seconds: from the start of ``first`` to the end of ``last``."""
    start = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC).timestamp()
    return start, start + ((last - first).days + 1) * DAY_S


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
    response_model=RecoverBody,
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
