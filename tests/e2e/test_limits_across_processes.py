"""Two ``vidgate serve --no-worker`` processes on one PostgreSQL database: one key's submits,
split between them and sent at once, are accepted within its limit (its bucket, plus what
refills while they run), not twice it; and an Idempotency-Key sent to both at once makes
one run, whose first answer every other submit gets back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from tests.api_helpers import SMALL, assert_submit_error
from tests.servers import LiveServer
from vidgate.store.schema import runs
from vidgate.store.sql import SQLStore

PER_MINUTE = 30
"""The bucket holds 30 submits and refills one every 2 s."""
CONFIG = f"[limits]\nsubmits_per_minute = {PER_MINUTE}\n"
BODY = {"model": "testcard-video", "prompt": "a test card", **SMALL}


@pytest.fixture(scope="module")
def apis(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[tuple[list[LiveServer], dict[str, str]]]:
    """Both API processes (started at once), and the secrets of two keys by name."""
    secrets = asyncio.run(_keys(module_postgres_url, ["limited", "idempotent", "one-at-a-time"]))
    root = tmp_path_factory.mktemp("limits")
    env = {"VIDGATE_DATABASE_URL": module_postgres_url}
    servers = [
        LiveServer(root / f"api{i}", CONFIG, extra_args=["--no-worker"], env=env) for i in (0, 1)
    ]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(LiveServer.start, servers))
        yield servers, secrets
    finally:
        for server in servers:
            server.stop()


async def _keys(url: str, names: list[str]) -> dict[str, str]:
    store = await SQLStore.open(url)
    try:
        return {
            name: (await store.create_key(name, max_in_flight=1 if "one" in name else None))[1]
            for name in names
        }
    finally:
        await store.close()


async def _submit_all(
    targets: list[tuple[LiveServer, dict[str, str]]], secret: str
) -> list[httpx.Response]:
    """Every submit at once, each to its server with its extra headers."""
    limits = httpx.Limits(max_connections=len(targets))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{server.base_url}/api/generate-video",
                    json=BODY,
                    headers={"x-api-key": secret, **headers},
                )
                for server, headers in targets
            )
        )


def test_one_key_gets_its_limit_across_both_processes(
    apis: tuple[list[LiveServer], dict[str, str]],
) -> None:
    servers, secrets = apis
    targets = [(servers[i % 2], {}) for i in range(120)]
    began = time.monotonic()
    answers = asyncio.run(_submit_all(targets, secrets["limited"]))
    elapsed = time.monotonic() - began
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) == {202, 429}, codes
    refill = PER_MINUTE / 60 * elapsed
    # Per process, each would have let a bucket through: about 60.
    assert PER_MINUTE <= codes[202] <= PER_MINUTE + refill, (codes, elapsed)
    for answer in answers:
        if answer.status_code == 429:
            message = assert_submit_error(answer, 429, "RATE_LIMITED")
            assert f"at most {PER_MINUTE} submits a minute per key" in message
            assert 1 <= int(answer.headers["Retry-After"]) <= 2, answer.headers
    per_server = Counter((str(answer.request.url.port), answer.status_code) for answer in answers)
    for server in servers:  # both processes refused: they share the one bucket
        assert per_server[(str(server.port), 429)] > 0, per_server


@pytest.mark.parametrize(
    ("key_name", "idempotency_keys"), [("idempotent", 4), ("one-at-a-time", 1)]
)
def test_one_idempotency_key_sent_to_both_processes_at_once_makes_one_run(
    apis: tuple[list[LiveServer], dict[str, str]],
    module_postgres_url: str,
    key_name: str,
    idempotency_keys: int,
) -> None:
    """Also for a key with an in-flight limit of 1: its retries wait for the first submit's
    lock on the key, then are answered with its run, not refused for it."""
    servers, secrets = apis
    keys = [f"same-{key_name}-{i}" for i in range(idempotency_keys)]
    targets = [(servers[i % 2], {"Idempotency-Key": key}) for key in keys for i in range(6)]
    answers = asyncio.run(_submit_all(targets, secrets[key_name]))
    assert [answer.status_code for answer in answers] == [202] * len(targets), [
        answer.text for answer in answers if answer.status_code != 202
    ]
    by_key: dict[str, list[httpx.Response]] = {}
    for (_, headers), answer in zip(targets, answers, strict=True):
        by_key.setdefault(headers["Idempotency-Key"], []).append(answer)
    run_ids = set()
    for group in by_key.values():
        assert len({answer.json()["runId"] for answer in group}) == 1, [a.json() for a in group]
        firsts = [a for a in group if a.headers.get("Idempotent-Replayed") != "true"]
        assert len(firsts) == 1, [dict(a.headers) for a in group]
        assert {a.content for a in group} == {firsts[0].content}  # the first answer, again
        run_ids.add(group[0].json()["runId"])
    assert len(run_ids) == len(keys)
    assert asyncio.run(_runs_of_key(module_postgres_url, secrets[key_name])) == len(keys)


async def _runs_of_key(url: str, secret: str) -> int:
    store = await SQLStore.open(url, migrate=False)
    try:
        key = await store.authenticate(secret)
        assert key is not None
        query = select(func.count()).select_from(runs).where(runs.c.api_key_id == key.id)
        count: int = await store._read(lambda conn: conn.execute(query).scalar_one())
        return count
    finally:
        await store.close()
