"""vidgate's status routes as a scripted app, for the SDK's stream tests over loopback HTTP.

Speaks the wire format the SDK reads (see ``docs/sdk.md``):

* ``GET /api/video/status?requestId=`` (or ``runId=``) answers the unified status body;
  ``waitSeconds`` holds the answer until the run changes or the hold ends.
* ``GET /api/video/status/stream?requestId=`` answers ``text/event-stream``: one event per
  state (``id: <sequence>``, ``data: <status body>``), ``: keep-alive`` comments every
  ``keepalive_s`` while nothing changes, and the end of the stream after a terminal state.
  ``Last-Event-ID: n`` resumes: only states newer than ``n`` are sent. With ``retry_ms`` set,
  the stream opens with ``retry: <ms>``.
* Both routes take ``x-api-key`` or ``Authorization: Bearer``: 401 for an unknown key, 400
  for a missing id, 404 for an unknown run or another key's run. With ``offers_stream``
  False, the stream route answers 404 like any unknown path.

A run's states come from a timeline (seconds after the first request that asks for it),
so nothing runs per run.
Faults: ``faults`` scripts the next answers of ``"stream"`` or ``"status"``; ``drop_after``
breaks a stream's connection right after the event with that sequence number (once).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.emulators.harness import Faults

KEY = "vg-key-owner"
OTHER_KEY = "vg-key-stranger"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@dataclass
class ScriptedRun:
    run_id: str
    owner: str
    timeline: list[tuple[float, dict[str, Any]]]
    started: float | None = None

    def elapsed(self) -> float:
        if self.started is None:
            self.started = time.monotonic()
        return time.monotonic() - self.started

    def current(self) -> tuple[int, dict[str, Any]]:
        """(sequence number, status body) of the state the run is in now."""
        elapsed = self.elapsed()
        seq = max(i for i, (at, _) in enumerate(self.timeline, 1) if at <= elapsed)
        return seq, self.body(seq)

    def body(self, seq: int) -> dict[str, Any]:
        state = self.timeline[seq - 1][1]
        return {
            "requestId": self.run_id,
            "runId": self.run_id,
            "model": "testcard-video",
            **state,
            "data": {"status": state["status"], "requestId": self.run_id},
        }

    def next_change_in(self) -> float | None:
        elapsed = self.elapsed()
        later = [at - elapsed for at, _ in self.timeline if at > elapsed]
        return min(later) if later else None


class Dropped(Exception):
    """Raised inside a stream to break its connection."""


@dataclass
class StreamState:
    keepalive_s: float = 0.05
    retry_ms: int | None = None
    offers_stream: bool = True
    runs: dict[str, ScriptedRun] = field(default_factory=dict)
    drop_after: dict[str, set[int]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    #: Every request to either route: (route, headers lower-cased, query).
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, run_id: str, *states: tuple[float, dict[str, Any]], owner: str = KEY) -> None:
        self.runs[run_id] = ScriptedRun(run_id, owner, list(states))

    def requests(self, route: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        return [(headers, query) for r, headers, query in self.seen if r == route]


def _key(request: Request) -> str | None:
    bearer = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip() or None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": status, "message": message}, status_code=status)


def create_app(state: StreamState) -> Starlette:
    def find(request: Request, route: str) -> ScriptedRun | Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        state.seen.append((route, headers, dict(request.query_params)))
        key = _key(request)
        if key not in (KEY, OTHER_KEY):
            return _error(401, "Invalid API key")
        run_id = request.query_params.get("requestId") or request.query_params.get("runId")
        if not run_id:
            return _error(400, "requestId is required")
        run = state.runs.get(run_id)
        if run is None or run.owner != key:
            return _error(404, "Request not found")
        return run

    async def status(request: Request) -> Response:
        found = find(request, "status")
        if isinstance(found, Response):
            return found
        fault = await state.faults.apply("status")
        if fault is not None:
            return fault
        seq, body = found.current()
        hold = float(request.query_params.get("waitSeconds") or 0)
        deadline = time.monotonic() + hold
        while body["status"] not in TERMINAL and time.monotonic() < deadline:
            await anyio.sleep(min(0.02, deadline - time.monotonic()))
            seq_now, body_now = found.current()
            if seq_now != seq:
                body = body_now
                break
        return JSONResponse(body)

    async def stream(request: Request) -> Response:
        if not state.offers_stream:
            state.seen.append(("stream", dict(request.headers), dict(request.query_params)))
            return _error(404, "Not found")
        found = find(request, "stream")
        if isinstance(found, Response):
            return found
        fault = await state.faults.apply("stream")
        if fault is not None:
            return fault
        last = request.headers.get("last-event-id")
        after = int(last) if last and last.isdigit() else 0
        return StreamingResponse(
            events(found, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def events(run: ScriptedRun, after: int) -> AsyncIterator[str]:
        if state.retry_ms is not None:
            yield f"retry: {state.retry_ms}\n\n"
        while True:
            seq, body = run.current()
            if seq > after:
                yield f"id: {seq}\ndata: {json.dumps(body)}\n\n"
                after = seq
                with state.lock:
                    drops = state.drop_after.get(run.run_id, set())
                    drop = seq in drops
                    drops.discard(seq)
                if drop:
                    raise Dropped(f"dropped after event {seq}")
                if body["status"] in TERMINAL:
                    return
                continue
            change = run.next_change_in()
            quiet = state.keepalive_s if change is None else min(state.keepalive_s, change)
            await anyio.sleep(max(0.0, quiet))
            if run.current()[0] == seq:
                yield ": keep-alive\n\n"

    return Starlette(
        routes=[
            Route("/api/video/status", status),
            Route("/api/video/status/stream", stream),
        ]
    )
