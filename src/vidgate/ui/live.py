"""``/ui/events``: every change of every run as server-sent events, for the runs page (one
stream per page, however many rows it shows).

It listens to this process's run events (:class:`~vidgate.events.hub.RunEvents`), which
carry changes made here and, through the store's feed, those other processes make. Changes
that arrive faster than the browser reads are merged per run (only a run's newest status
matters); past :data:`MAX_PENDING` runs waiting, they are dropped and the page is told to
refresh (``event: resync``), as it is when the feed may have missed changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from vidgate.events.hub import RunChange, RunEvents
from vidgate.server.common import state_of
from vidgate.store.dashboard import PROMPT_SHOWN_CHARS
from vidgate.ui import sessions
from vidgate.ui.render import SECURITY_HEADERS, when

router = APIRouter(include_in_schema=False)
MAX_PENDING = 1000
RETRY_MS = 3000
RECHECK_S = 5.0
"""How often an open stream checks that its session still holds (key live and admin, cookie
not expired); it ends, telling the page, once it does not."""


def change_body(change: RunChange) -> dict[str, Any]:
    """What the page needs of a change: the run's status, and, when the change carries
    the run (made in this process), what a new row shows."""
    body: dict[str, Any] = {"runId": change.run_id, "seq": change.seq, "status": change.status.flat}
    run = change.run
    if run is not None:
        prompt = run.request.get("prompt") if isinstance(run.request, dict) else None
        body.update(
            model=run.model,
            backend=run.backend,
            apiKeyId=run.api_key_id,
            createdAt=when(run.created_at),
            cost=run.cost,
            prompt=prompt[:PROMPT_SHOWN_CHARS] if isinstance(prompt, str) else "",
        )
    return body


class _Pending:
    """Changes waiting to be sent, the newest per run, in the order runs first changed."""

    def __init__(self) -> None:
        self.changes: dict[str, RunChange] = {}
        self.resync = False
        self.arrived = asyncio.Event()

    def __call__(self, change: RunChange | None) -> None:
        if change is None or len(self.changes) >= MAX_PENDING:
            self.changes.clear()
            self.resync = True
        else:
            known = self.changes.get(change.run_id)
            if known is None or known.seq < change.seq:
                self.changes[change.run_id] = change
        self.arrived.set()

    def take(self) -> tuple[list[RunChange], bool]:
        changes, resync = list(self.changes.values()), self.resync
        self.changes, self.resync = {}, False
        self.arrived.clear()
        return changes, resync


SIGNED_OUT = "event: signed-out\ndata: {}\n\n"


async def _stream(
    events: RunEvents, heartbeat_s: float, signed_in: Callable[[], Awaitable[bool]]
) -> AsyncIterator[str]:
    """Listening starts with the stream (so a stream never started leaves no listener) and
    ends with it, however it ends (a browser that goes away cancels it). Every
    :data:`RECHECK_S` it checks ``signed_in``: a revoked key or an expired session ends it."""
    pending = _Pending()
    events.add_listener(pending)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        checked = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.arrived.wait(), min(heartbeat_s, RECHECK_S))
            if time.monotonic() - checked >= RECHECK_S:
                if not await signed_in():
                    yield SIGNED_OUT
                    return
                checked = time.monotonic()
            if not pending.arrived.is_set():
                yield ": keep-alive\n\n"
                continue
            changes, resync = pending.take()
            if resync:
                yield "event: resync\ndata: {}\n\n"
            for change in changes:
                yield f"event: run\ndata: {json.dumps(change_body(change))}\n\n"
    finally:
        events.remove_listener(pending)


@router.get("/ui/events")
async def events_route(request: Request) -> Response:
    state = state_of(request)
    if await sessions.session_key(state, request) is None:
        message = "sign in to the dashboard at /ui/login first"
        return Response(message, status_code=401, media_type="text/plain", headers=SECURITY_HEADERS)

    async def signed_in() -> bool:
        return await sessions.session_key(state, request) is not None

    return StreamingResponse(
        _stream(state.store.events, state.settings.server.sse_heartbeat_s, signed_in),
        media_type="text/event-stream",
        headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
    )
