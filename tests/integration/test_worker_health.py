"""``/healthz`` fails while the process's worker is not running: an API whose worker has
stopped must not look healthy to a load balancer or a supervisor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.servers import serving
from vidgate.config import Settings
from vidgate.server.app import create_app
from vidgate.services import Services


async def test_healthz_fails_once_the_worker_has_stopped(tmp_path: Path) -> None:
    go = asyncio.Event()

    async def worker(_services: Services, _stop: asyncio.Event) -> None:
        await go.wait()
        raise RuntimeError("injected fault")

    app = create_app(Settings(data_dir=tmp_path / "data"), background=worker)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200 and healthy.json()["worker"] is True
        go.set()
        for _ in range(100):
            failing = await client.get("/healthz")
            if failing.status_code != 200:
                break
            await asyncio.sleep(0.01)
    assert failing.status_code == 503
    assert failing.json() == {
        "error": 503,
        "message": "the worker in this process has stopped (RuntimeError: injected fault); "
        "runs submitted here wait for another worker. Restart vidgate; its log has the "
        "details",
    }
