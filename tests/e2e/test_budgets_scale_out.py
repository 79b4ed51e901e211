"""Budgets and in-flight limits across two API processes on one PostgreSQL database:
concurrent submits through both never let a key past its limits."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from typer.testing import CliRunner

from tests.servers import TEST_CONFIG, LiveServer
from vidgate.cli import app

PRICED = (
    TEST_CONFIG
    + """
[models.priced-video]
backend = "testcard"
price_usd = 0.5
"""
)
SUBMITS = 24


async def burst(servers: list[LiveServer], key: str) -> Counter[tuple[int, str]]:
    """``SUBMITS`` submits at once, alternating between the servers: (status, type) counts."""
    body = {"model": "priced-video", "prompt": "race", "resolution": "240p", "duration": 1}

    async def one(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
        response = await client.post(f"{url}/api/generate-video", json=body)
        if response.status_code == 202:
            return 202, "accepted"
        return response.status_code, response.json()["error"]["type"]

    async with httpx.AsyncClient(headers={"x-api-key": key}, timeout=30) as client:
        answers = await asyncio.gather(
            *(one(client, servers[i % 2].base_url) for i in range(SUBMITS))
        )
    return Counter(answers)


def test_limits_hold_across_two_api_processes(tmp_path, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    env = {"VIDGATE_DATABASE_URL": postgres_url}
    servers = [
        LiveServer(tmp_path / f"api{i}", PRICED, extra_args=["--no-worker"], env=env)
        for i in range(2)
    ]
    options = ["--data-dir", str(servers[0].data_dir), "--config", str(servers[0].config)]

    def cli(*args: str) -> str:  # in this process: a CLI process costs seconds to start
        result = CliRunner().invoke(app, [*args, *options], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    limits = ["--budget-usd-per-day", "4", "--max-in-flight", "5"]
    key = cli("keys", "create", "racer", *limits).strip().splitlines()[-1]
    with ThreadPoolExecutor(2) as starting:
        list(starting.map(LiveServer.start, servers))
    try:
        # Nothing runs (no worker): five runs in flight, then every submit is refused 429.
        assert asyncio.run(burst(servers, key)) == {
            (202, "accepted"): 5,
            (429, "RATE_LIMITED"): SUBMITS - 5,
        }
        assert "no in-flight limit" in cli("keys", "update", "racer", "--no-max-in-flight")
        assert "daily budget $4 (UTC day), no in-flight limit" in cli("keys", "list")
        # $4 a day buys eight $0.50 runs: three more, then 402.
        assert asyncio.run(burst(servers, key)) == {
            (202, "accepted"): 3,
            (402, "INSUFFICIENT_BALANCE"): SUBMITS - 3,
        }
        balance = httpx.post(f"{servers[1].base_url}/api/check-balance", headers={"x-api-key": key})
        assert balance.json()["usd_balance"] == "0.00000000"
    finally:
        for server in servers:
            server.stop()
    usage = cli("usage", "--key", "racer")
    assert "priced-video" in usage and "4.0000" in usage, usage
