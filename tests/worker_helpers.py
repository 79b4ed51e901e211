"""What tests of a worker on its own share: a catalog with the testcard model, and runs."""

from __future__ import annotations

import time

from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.ids import new_run_id
from vidgate.store.records import NewRun, RunRecord
from vidgate.store.sql import SQLStore

CATALOG = Catalog(
    {
        "testcard-video": ModelSpec(
            slug="testcard-video",
            backend="testcard",
            name="t",
            parameters=catalog_module.testcard_parameters(),
            options={"mode": "text"},
        )
    }
)


async def submit_testcard_run(store: SQLStore, prompt: str) -> RunRecord:
    """A one-second 240p testcard run, due at once."""
    request = {
        "model": "testcard-video",
        "prompt": prompt,
        "duration_s": 1,
        "resolution": "240p",
        "extra": {},
    }
    run, _ = await store.submit(
        NewRun(
            id=new_run_id(),
            api_key_id="k",
            model="testcard-video",
            backend="testcard",
            request=request,
            cost=0,
            available_at=time.time(),
        ),
        idempotency_ttl_s=60,
    )
    return run
