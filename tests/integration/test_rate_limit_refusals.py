"""Only accepted submits count against the rate limit: a refused one (400, 409) gives its
token back, on the fast path and on the route alike."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api_helpers import SMALL
from tests.servers import serving
from vidgate.config import load_settings
from vidgate.server.app import create_app
from vidgate.store.sql import SQLStore

REFUSED = [
    ({"model": "no-such-model", "prompt": "x"}, {}),
    ({"model": "testcard-video", "prompt": "sandbox:blocked"}, {}),
    ({"model": "testcard-video", "prompt": "x", "duration": "long"}, {}),
    ({"model": "testcard-video", "prompt": "x"}, {"Idempotency-Key": "x" * 201}),
    ({"model": "testcard-video", "prompt": "other"}, {"Idempotency-Key": "taken"}),  # 409
]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "route"])
async def test_refused_submits_do_not_use_up_the_rate_limit(
    tmp_path: Path, fast_path: bool
) -> None:
    config = tmp_path / "vidgate.toml"
    config.write_text(
        f"[limits]\nsubmits_per_minute = 3\n[server]\nfast_path = {str(fast_path).lower()}\n"
    )
    settings = load_settings(config_file=config, data_dir=tmp_path / "data", env={})
    store = await SQLStore.open(settings.resolved_database_url)
    try:
        _, key = await store.create_key("test")
    finally:
        await store.close()
    body = {"model": "testcard-video", "prompt": "accepted", **SMALL}
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as client,
    ):

        async def submit(body: object, headers: dict[str, str]) -> int:
            response = await client.post("/api/generate-video", json=body, headers=headers)
            return response.status_code

        assert await submit(body, {"Idempotency-Key": "taken"}) == 202  # 1 of 3
        for refused, headers in REFUSED * 2:
            assert await submit(refused, headers) in (400, 409)
        accepted = [await submit(body, {}) for _ in range(3)]
        assert accepted == [202, 202, 429]  # 2 and 3 of 3, then the limit holds


async def test_submits_refused_for_their_urls_still_count(tmp_path: Path) -> None:
    """Their check cost DNS lookups: given back, such refusals would be unlimited."""
    config = tmp_path / "vidgate.toml"
    config.write_text("[limits]\nsubmits_per_minute = 2\n")
    settings = load_settings(config_file=config, data_dir=tmp_path / "data", env={})
    store = await SQLStore.open(settings.resolved_database_url)
    try:
        _, key = await store.create_key("test")
    finally:
        await store.close()
    inward = {"model": "testcard-image-video", "prompt": "x", "imageUrl": "http://127.0.0.1/a.png"}
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as client,
    ):
        codes = [(await client.post("/api/generate-video", json=inward)).status_code]
        codes += [(await client.post("/api/generate-video", json=inward)).status_code]
        codes += [(await client.post("/api/generate-video", json=inward)).status_code]
    assert codes == [400, 400, 429]
