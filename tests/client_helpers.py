"""Helpers for the SDK and client-CLI tests.

* :func:`call` runs one SDK call on either client: an ``AsyncClient`` method is awaited, a
  ``Client`` method runs in a worker thread. Each test is written once and run on both;
  :func:`collect` does the same for a status stream.
* :class:`HostedAPI` is an httpx transport that answers like NanoGPT's hosted API does,
  variations included (see its docstring).
* :class:`FaultProxy` is a loopback HTTP proxy in front of the live server that can break
  chosen requests (503, 429, dropped connections, unknown statuses) and records every
  request it sees.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.emulators.harness import DroppedResponse, Fault, Faults, LoopbackServer
from tests.emulators.media import sample_mp4

SMALL = {"resolution": "240p", "duration": 1}
FRIENDLY_FAILURE = "The video could not be generated. Please try again."


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await ``fn(*args, **kwargs)``: directly for a coroutine function, in a thread else."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


async def collect(statuses: Any) -> list[Any]:
    """Every item of a ``stream_status`` / ``Run.stream`` iterator, async or not (a plain
    iterator is drained in a thread)."""
    if hasattr(statuses, "__aiter__"):
        return [item async for item in statuses]
    return await asyncio.to_thread(list, statuses)


def mp4_frames(path: Path) -> int:
    """Decode the file; the number of video frames (raises if it is not a playable video)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# -- NanoGPT's hosted API, as an httpx transport ------------------------------------------

HOSTED_ORIGIN = "https://nano-gpt.test"
STORAGE_ORIGIN = "https://bucket.r2-storage.test"


@dataclass
class HostedRun:
    run_id: str
    model: str
    prompt: str
    script: list[dict[str, Any]]
    polls: int = 0


class HostedAPI:
    """NanoGPT's hosted video API as an httpx transport handler, with the variations its
    docs and live clients report (the research notes on the NanoGPT API):

    * submit answers ``202`` with ``id`` only, no ``runId``;
    * ``/api/video/status`` answers the *flat* OAS schema only: lower-case ``status``
      (``queued``, ``processing``, ``completed``...), ``videoUrl``, ``error``; no ``data``;
    * ``/api/generate-video/status`` answers ``{"data": {...}}`` with lower-case statuses
      and a provider ``request_id``;
    * a finished video's URL is *relative* (``/api/generate-video/content?...``); that
      route needs the key and redirects to presigned storage on another origin, which
      (like S3) refuses any request that carries an ``Authorization`` header;
    * ``waitSeconds`` is ignored and no ``Retry-After`` is sent.

    Each status poll advances a run one step of its script, picked by prompt:
    ``hosted:canceled`` ends ``CANCELED`` (one L), ``hosted:expired`` stays ``expired``
    forever, ``hosted:generating`` goes through ``generating``, ``hosted:failed`` fails with
    an error *object* and ``isNSFWError: "true"``; anything else queued → processing →
    completed. Submit errors: ``hosted:balance`` is the legacy
    ``{"error": "Insufficient balance", "status": 402}``; ``hosted:moderated`` is the
    OpenAI-style inline-moderation 400.
    """

    def __init__(self, api_key: str = "sk-nano-test") -> None:
        self.api_key = api_key
        self.runs: dict[str, HostedRun] = {}
        self.requests: list[httpx.Request] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self.handle)

    def _authorised(self, request: httpx.Request) -> bool:
        bearer = request.headers.get("authorization", "")
        return self.api_key in (request.headers.get("x-api-key"), bearer.removeprefix("Bearer "))

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            url = request.url
            if f"{url.scheme}://{url.host}" == STORAGE_ORIGIN:
                return self._storage(request)
            if not self._authorised(request):
                return httpx.Response(
                    401,
                    json={"error": {"message": "Invalid API key", "type": "authentication_error"}},
                )
            route = (request.method, url.path)
            if route == ("POST", "/api/generate-video"):
                return self._submit(json.loads(request.content))
            if route == ("GET", "/api/video/status"):
                run_id = url.params.get("requestId") or url.params.get("runId")
                return self._status(run_id, flat=True)
            if route == ("GET", "/api/generate-video/status"):
                return self._status(url.params.get("runId"), flat=False)
            if route == ("GET", "/api/generate-video/content"):
                run_id = url.params.get("runId", "")
                return httpx.Response(
                    302,
                    headers={"location": f"{STORAGE_ORIGIN}/videos/{run_id}.mp4?X-Amz-Signature=x"},
                )
            if route == ("GET", "/api/v1/video-models"):
                return httpx.Response(200, json=HOSTED_MODELS)
            return httpx.Response(404, json={"error": 404, "message": "Not found"})

    def _submit(self, body: dict[str, Any]) -> httpx.Response:
        prompt = str(body.get("prompt") or "")
        if "hosted:balance" in prompt:
            return httpx.Response(402, json={"error": "Insufficient balance", "status": 402})
        if "hosted:moderated" in prompt:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "Your request was blocked by content moderation.",
                        "type": "invalid_request_error",
                        "code": "content_policy_violation",
                    }
                },
            )
        run_id = f"vid_hosted{next(self._ids):04d}"
        self.runs[run_id] = HostedRun(run_id, str(body["model"]), prompt, _script(prompt, run_id))
        return httpx.Response(
            202,
            json={
                "id": run_id,
                "status": "pending",
                "model": body["model"],
                "cost": 0.35,
                "paymentSource": "XNO",
                "remainingBalance": 12.5,
            },
        )

    def _status(self, run_id: str | None, *, flat: bool) -> httpx.Response:
        run = self.runs.get(run_id or "")
        if run is None:
            return httpx.Response(404, json={"error": 404, "message": "Request not found"})
        step = run.script[min(run.polls, len(run.script) - 1)]
        run.polls += 1
        if flat:
            body = {
                "requestId": run.run_id,
                "status": step["status"],
                "progress": step.get("progress"),
                "estimatedTimeRemaining": None,
                "videoUrl": step.get("url"),
                "error": step.get("error"),
                "createdAt": "2026-01-17T12:34:56.000Z",
                "completedAt": None,
            }
            if "isNSFWError" in step:
                # The docs' unified failure example nests the details, upper case.
                body["error"] = step["error"]["message"]
                body["data"] = {"status": "FAILED", "requestId": run.run_id, **step}
                body["data"]["status"] = "FAILED"
            return httpx.Response(200, json=body)
        data: dict[str, Any] = {"status": step["status"], "request_id": f"fal-request-{run.run_id}"}
        if step.get("url"):
            data["output"] = {"video": {"url": step["url"]}}
        for key in ("error", "isNSFWError", "userFriendlyError"):
            if key in step:
                data[key] = step[key]
        return httpx.Response(200, json={"data": data})

    def _storage(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            return httpx.Response(
                400, text="<Error><Code>InvalidArgument</Code>Only one auth mechanism allowed"
            )
        if not re.fullmatch(r"/videos/vid_hosted\d+\.mp4", request.url.path):
            return httpx.Response(404, text="NoSuchKey")
        return httpx.Response(200, content=sample_mp4(), headers={"content-type": "video/mp4"})

    def seen(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def _script(prompt: str, run_id: str) -> list[dict[str, Any]]:
    url = f"/api/generate-video/content?model=hosted-video&runId={run_id}&variant=video"
    if "hosted:canceled" in prompt:
        return [{"status": "queued"}, {"status": "CANCELED"}]
    if "hosted:expired" in prompt:
        return [{"status": "expired"}]
    if "hosted:failed" in prompt:
        return [
            {"status": "processing", "progress": 10},
            {
                "status": "failed",
                "error": {"message": "Content policy violation", "type": "nsfw"},
                "isNSFWError": "true",
                "userFriendlyError": "Content flagged as inappropriate.",
            },
        ]
    middle = "generating" if "hosted:generating" in prompt else "processing"
    return [
        {"status": "queued", "progress": 0},
        {"status": middle, "progress": 50},
        {"status": "completed", "progress": 100, "url": url},
    ]


HOSTED_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "hosted-video",
            "object": "model",
            "name": "Hosted video",
            "description": "A model of the hosted API",
            "architecture": {
                "modality": "video",
                "input_modalities": ["text", "image"],
                "output_modalities": ["video"],
            },
            "pricing": {"currency": "USD", "per_video": {"480p": 0.72}},
            "capabilities": {"text_to_video": True, "image_to_video": True},
            "supported_parameters": {
                "parameters": {"resolution": {"type": "select", "options": [{"value": "480p"}]}},
                "defaults": {"resolution": "480p"},
            },
        }
    ],
    "meta": {"count": 1, "generated_at": "2026-05-07T12:00:00.000Z"},
}


# -- a fault-injecting proxy in front of the live server ---------------------------------

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "te",
    "upgrade",
}


@dataclass
class Seen:
    """One request that reached the proxy."""

    at: float
    operation: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    answered: str = ""
    body: Any = field(default=None, repr=False)


def operation(method: str, path: str) -> str:
    """The fault operation a request belongs to."""
    if method == "POST" and path == "/api/generate-video":
        return "submit"
    if path in ("/api/generate-video/status", "/api/video/status"):
        return "status"
    if path == "/api/video/status/stream":
        return "stream"
    if path == "/api/generate-video/cancel":
        return "cancel"
    if path == "/api/v1/video-models":
        return "models"
    return "download"


class FaultProxy:
    """Forwards every request to ``upstream``; :attr:`faults` scripts what breaks.

    Fault kinds (``tests.emulators.harness.Fault``): ``status`` answers the scripted status
    and body *without* forwarding (a 503 from a load balancer, a 429, a 200 with an unknown
    status); ``drop`` forwards the request, then breaks the connection before the answer
    is complete (the server acted; the client never hears of it); ``delay`` waits, then
    forwards; ``malformed`` answers a non-JSON body. Absolute URLs of the upstream in
    answers are rewritten to the proxy, so downloads go through it too.

    The status stream (operation ``stream``) is relayed chunk by chunk as it arrives; its
    ``drop`` fault breaks the connection right after the first event.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = Faults()
        self.seen: list[Seen] = []
        self._server = LoopbackServer(self)  # an object with an async __call__: ASGI 3

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def __enter__(self) -> FaultProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def push(self, op: str, fault: Fault, times: int = 1) -> None:
        self.faults.push(op, fault, times)

    def requests(self, op: str) -> list[Seen]:
        return [s for s in self.seen if s.operation == op]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        seen = Seen(
            at=time.monotonic(),
            operation=operation(request.method, request.url.path),
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.seen.append(seen)
        response = await self._answer(request, seen)
        await response(scope, receive, send)

    async def _answer(self, request: Request, seen: Seen) -> Response:
        fault = self.faults.take(seen.operation)
        if fault is not None and fault.kind == "status":
            seen.answered = f"fault {fault.status}"
            body = fault.body if fault.body is not None else {"error": f"emulated {fault.status}"}
            return JSONResponse(body, status_code=fault.status, headers=fault.headers)
        if fault is not None and fault.kind == "malformed":
            seen.answered = "fault malformed"
            return Response(
                "<html>502 Bad Gateway</html>", status_code=200, media_type="application/json"
            )
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
        if seen.operation == "stream":
            return await self._relay(request, seen, drop=fault is not None and fault.kind == "drop")
        upstream = await self._forward(request)
        seen.body = upstream.content
        if fault is not None and fault.kind == "drop":
            seen.answered = f"dropped {upstream.status_code}"
            return DroppedResponse()
        seen.answered = str(upstream.status_code)
        headers = {
            k: self._rewrite(v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
        }
        content = upstream.content
        if "json" in upstream.headers.get("content-type", ""):
            content = self._rewrite(content.decode("utf-8")).encode("utf-8")
        return Response(content, status_code=upstream.status_code, headers=headers)

    async def _forward(self, request: Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["host"] = urlsplit(self.base_url).netloc
        async with httpx.AsyncClient(timeout=120) as client:
            return await client.request(
                request.method,
                self.upstream + request.url.path,
                params=list(request.query_params.multi_items()),
                content=await request.body(),
                headers=headers,
            )

    async def _relay(self, request: Request, seen: Seen, *, drop: bool) -> Response:
        """Forward a request whose answer is relayed as it arrives (an event stream)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["host"] = urlsplit(self.base_url).netloc
        client = httpx.AsyncClient(timeout=httpx.Timeout(120, read=None))
        upstream = await client.send(
            client.build_request(
                request.method,
                self.upstream + request.url.path,
                params=list(request.query_params.multi_items()),
                headers=headers,
            ),
            stream=True,
        )
        seen.answered = f"dropped {upstream.status_code}" if drop else str(upstream.status_code)
        seen.body = ""

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for text in upstream.aiter_text():
                    seen.body += text
                    yield self._rewrite(text).encode("utf-8")
                    if drop and "data:" in text:
                        raise ConnectionAbortedError("emulated dropped stream")
            finally:
                await upstream.aclose()
                await client.aclose()

        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return StreamingResponse(relay(), status_code=upstream.status_code, headers=kept)

    def _rewrite(self, text: str) -> str:
        return text.replace(self.upstream, self.base_url)


def unknown_status_body(run_id: str, status: str = "expired") -> dict[str, Any]:
    """A status answer whose status no client knows (for ``Fault(kind="status", ...)``)."""
    return {"requestId": run_id, "status": status, "data": {"status": status, "requestId": run_id}}
