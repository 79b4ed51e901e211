"""The baseline server for HTTP benchmarks: a trivial FastAPI route, served like vidgate."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}
