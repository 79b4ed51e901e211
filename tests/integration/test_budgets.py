"""Budgets, in-flight limits, usage, balance and recover, over real HTTP on SQLite and
PostgreSQL. Without a worker (except where a run must complete), runs stay in flight."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.api_helpers import assert_status_error, assert_submit_error
from tests.servers import serving
from vidgate.cli import app
from vidgate.config import Settings, load_settings
from vidgate.runs.status import Status
from vidgate.server.app import create_app
from vidgate.store.sql import SQLStore
from vidgate.worker.runtime import run_worker

PRICED = """
[worker]
enabled = false
[models.priced-video]
backend = "testcard"
price_by_resolution_usd = {"240p" = 0.25, "480p" = 1.0}
[models.per-second-video]
backend = "testcard"
price_usd = 0.1
price_per_second_usd = 0.2
"""


def settings_for(tmp_path: Path, database_url: str) -> Settings:
    config = tmp_path / "vidgate.toml"
    config.write_text(PRICED)
    return load_settings(
        config_file=config, data_dir=tmp_path / "data", env={"VIDGATE_DATABASE_URL": database_url}
    )


async def new_key(settings: Settings, **limits: float | int) -> str:
    store = await SQLStore.open(settings.resolved_database_url)
    try:
        _, secret = await store.create_key("budgeted", **limits)  # type: ignore[arg-type]
    finally:
        await store.close()
    return secret


@pytest.fixture
async def client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(tmp_path, database_url)
    key = await new_key(settings, budget_usd_per_day=2.0, max_in_flight=3)
    app = create_app(settings)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


async def submit(client: httpx.AsyncClient, resolution: str, **headers: str) -> httpx.Response:
    body = {"model": "priced-video", "prompt": "budget", "resolution": resolution, "duration": 1}
    return await client.post("/api/generate-video", json=body, headers=headers)


async def test_budget_and_in_flight_limits_refuse_with_the_upstream_envelope(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, "240p")
    assert first.status_code == 202, first.text
    assert first.json()["cost"] == 0.25 and first.json()["remainingBalance"] == 1.75
    second = await submit(client, "480p")
    assert second.json()["cost"] == 1.0 and second.json()["remainingBalance"] == 0.75

    over = await submit(client, "480p")
    message = assert_submit_error(over, 402, "INSUFFICIENT_BALANCE")
    assert "$0.75 left of its daily budget of $2" in message
    assert "vidgate keys update budgeted --budget-usd-per-day" in message

    third = await submit(client, "240p")
    assert third.json()["remainingBalance"] == 0.5
    crowded = await submit(client, "240p")
    message = assert_submit_error(crowded, 429, "RATE_LIMITED")
    assert "3 runs in flight" in message and "--max-in-flight" in message
    assert int(crowded.headers["retry-after"]) >= 1

    cancelled = await client.post(
        "/api/generate-video/cancel", json={"runId": second.json()["runId"]}
    )
    assert cancelled.json()["data"]["cost"] == 0  # cancelled before it started: free
    balance = (await client.post("/api/check-balance")).json()
    assert balance == {
        "usd_balance": "1.50000000",
        "nano_balance": "0",
        "budget_usd_per_day": "2.00000000",
        "spent_usd_today": "0.50000000",
    }
    again = await submit(client, "480p", **{"Idempotency-Key": "k2"})
    assert again.status_code == 202 and again.json()["remainingBalance"] == 0.5
    replayed = await submit(client, "480p", **{"Idempotency-Key": "k2"})  # at the limits
    assert replayed.status_code == 202 and replayed.json()["runId"] == again.json()["runId"]

    store: SQLStore = client.app.state.vidgate.store  # type: ignore[attr-defined]
    failed = await store.transition(third.json()["runId"], Status.FAILED, error="boom")
    assert failed is not None and failed.cost == 0  # a failed run costs nothing

    usage = (await client.get("/api/v1/usage")).json()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert usage["to"] == today and usage["data"] == [
        {"date": today, "model": "priced-video", "runs": 4, "seconds": 0, "cost": 1.25}
    ]
    assert usage["totals"] == {"runs": 4, "seconds": 0, "cost": 1.25}

    recent = (await client.get("/api/generate-video/recover", params={"limit": 2})).json()
    assert [r["runId"] for r in recent["data"]] == [
        again.json()["runId"],
        third.json()["runId"],
    ]
    assert [r["status"] for r in recent["data"]] == ["queued", "failed"]
    assert recent["data"][0]["id"] == recent["data"][0]["runId"]
    everything = (await client.get("/api/generate-video/recover")).json()["data"]
    assert len(everything) == 4
    other = await client.get("/api/generate-video/recover", params={"model": "testcard-video"})
    assert other.json() == {"data": []}


async def test_bad_usage_dates_and_recover_limits_are_400(client: httpx.AsyncClient) -> None:
    for params, words in [
        ({"from": "2026-13-01"}, "'from' must be a day as YYYY-MM-DD"),
        ({"from": "20260101"}, "'from' must be a day as YYYY-MM-DD"),
        ({"days": "367"}, "'days'"),
        ({"days": "0"}, "'days'"),
    ]:
        message = assert_status_error(await client.get("/api/v1/usage", params=params), 400)
        assert words in message, message
    for limit in ("0", "51", "ten"):
        response = await client.get("/api/generate-video/recover", params={"limit": limit})
        assert "limit" in assert_status_error(response, 400)
    past = (await client.get("/api/v1/usage", params={"from": "2020-01-01", "days": 31})).json()
    assert past["data"] == [] and (past["from"], past["to"]) == ("2020-01-01", "2020-01-31")


async def test_a_completed_run_costs_what_was_made(tmp_path: Path) -> None:
    """Per-second pricing: the final cost is from the video's seconds, as usage counts them;
    a key without a budget has an unlimited balance and no remainingBalance. (SQLite only: a
    render takes seconds, and settling the cost is the same statement on both.)"""
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    key = await new_key(settings)
    app = create_app(settings, background=run_worker)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as client,
    ):
        body = {"model": "per-second-video", "prompt": "p", "resolution": "240p", "duration": 1}
        accepted = (await client.post("/api/generate-video", json=body)).json()
        assert accepted["cost"] == 0.3 and accepted["remainingBalance"] is None
        params = {"runId": accepted["runId"], "waitSeconds": 10}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = (await client.get("/api/video/status", params=params)).json()["data"]
            if data["status"] == "COMPLETED":
                break
        assert data["status"] == "COMPLETED" and data["cost"] == 0.3
        usage = (await client.get("/api/v1/usage")).json()["totals"]
        assert usage == {"runs": 1, "seconds": 1.0, "cost": 0.3}
        balance = (await client.post("/api/check-balance")).json()
        assert balance["usd_balance"] == "Infinity" and "budget_usd_per_day" not in balance


async def test_concurrent_submits_of_one_process_hold_the_in_flight_limit(
    client: httpx.AsyncClient,
) -> None:
    """On SQLite these share group commits: a refusal must not undo the others' runs."""
    answers = await asyncio.gather(*(submit(client, "240p") for _ in range(10)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * 3 + [429] * 7
    recent = (await client.get("/api/generate-video/recover")).json()["data"]
    assert len(recent) == 3


def test_key_limit_commands_say_what_is_wrong(tmp_path: Path) -> None:
    options = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(app, [*args, *options], env={"VIDGATE_DATABASE_URL": ""})

    assert cli("keys", "create", "k", "--max-in-flight", "2").exit_code == 0
    assert "at most 2 runs in flight" in cli("keys", "list").stdout
    both = cli("keys", "update", "k", "--budget-usd-per-day", "1", "--no-budget")
    assert both.exit_code == 2 and "not both" in both.stderr
    nothing = cli("keys", "update", "k")
    assert nothing.exit_code == 2 and "--budget-usd-per-day" in nothing.stderr
    negative = cli("keys", "update", "k", "--budget-usd-per-day", "-1")
    assert negative.exit_code == 2
    missing = cli("keys", "update", "nobody", "--no-budget")
    assert missing.exit_code == 1 and "no API key named 'nobody'" in missing.stderr
    cleared = cli("keys", "update", "k", "--no-max-in-flight")
    assert "no daily budget, no in-flight limit" in cleared.stdout
    bad_day = cli("usage", "--from", "yesterday")
    assert bad_day.exit_code == 2 and "'--from' must be a day as YYYY-MM-DD" in bad_day.stderr
    empty = cli("usage", "--key", "k")
    assert empty.exit_code == 0 and "total" in empty.stdout
