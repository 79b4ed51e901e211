"""An emulator of Replicate's predictions API, for tests over real loopback HTTP.

Follows Replicate's documented protocol (replicate.com/docs, HTTP API reference):

* ``POST /v1/models/{owner}/{name}/predictions`` ``{"input": ...}``,
  ``POST /v1/predictions`` ``{"version": ..., "input": ...}`` and
  ``POST /v1/deployments/{owner}/{name}/predictions`` create a prediction (201, ``Location``
  header). Auth is ``Authorization: Bearer <token>`` (``Token`` is accepted too); a wrong
  token gets 401 ``{"title": "Unauthenticated", "detail": "You did not pass a valid
  authentication token", "status": 401}``. An input without a string ``prompt`` gets 422
  ``Input validation failed``. ``Prefer: wait[=N]`` holds the answer until the prediction
  ends or N seconds (at most 60) pass; ``Cancel-After: 30s`` / ``2m`` sets a deadline.
* ``GET /v1/predictions/{id}``: ``starting`` (queued, ``queue_s``), ``processing`` (``run_s``,
  with tqdm-style progress lines in ``logs``), then ``succeeded`` with ``output`` a URL,
  ``failed`` with ``error`` (prompt holds ``forbidden``: the E005 "flagged as sensitive"
  message; ``explode``: a model traceback), ``canceled``, or ``aborted`` (deadline passed
  before start). After ``output_ttl_s`` the data is removed (``data_removed: true``).
* ``POST /v1/predictions/{id}/cancel`` answers the prediction, ``canceled`` if it was not
  finished.
* ``GET /files/{id}.mp4`` is the file CDN: a real MP4, no token, 404 after ``output_ttl_s``.

Status is computed from elapsed time, so no task runs per prediction. Faults can be scripted
per operation: ``submit`` (before the prediction exists), ``submit_response`` (after it was
created: the answer is lost), ``status``, ``cancel``, ``download``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.harness import Faults
from tests.emulators.media import sample_mp4

API_KEY = "r8_emulatedTokenAbcdef0123456789"
NSFW_ERROR = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)
EXPLODE_ERROR = (
    'Traceback (most recent call last):\n  File "predict.py", line 88, in predict\n'
    "RuntimeError: the model exploded (CUDA error: an illegal memory access was encountered)"
)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass
class Prediction:
    id: str
    model: str | None
    version: str | None
    input: dict[str, Any]
    created: float
    created_wall: float
    queue_s: float
    run_s: float
    outcome: str  # "ok", "nsfw" or "error"
    deadline_s: float | None = None
    canceled_at: float | None = None
    polls: int = 0
    downloads: int = 0

    @property
    def starts(self) -> float:
        return self.created + self.queue_s

    @property
    def finishes(self) -> float:
        return self.starts + self.run_s

    def status(self, now: float) -> str:
        if self.canceled_at is not None and now >= self.canceled_at:
            return "canceled"
        if self.deadline_s is not None:
            deadline = self.created + self.deadline_s
            if now >= deadline and deadline < self.starts:
                return "aborted"
            if now >= deadline and deadline < self.finishes:
                return "canceled"
        if now < self.starts:
            return "starting"
        if now < self.finishes:
            return "processing"
        return {"ok": "succeeded", "nsfw": "failed", "error": "failed"}[self.outcome]

    def ended(self) -> float:
        """When the prediction reached its terminal status (for data retention)."""
        ends = [self.finishes]
        if self.canceled_at is not None:
            ends.append(self.canceled_at)
        if self.deadline_s is not None:
            ends.append(self.created + self.deadline_s)
        return min(ends)


@dataclass
class ReplicateState:
    """The emulator's predictions, counters and knobs. Tests read and set these directly."""

    api_key: str = API_KEY
    queue_s: float = 0.3
    run_s: float = 0.5
    output_ttl_s: float = 3600.0
    status_override: str | None = None
    faults: Faults = field(default_factory=Faults)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    submit_bodies: list[dict[str, Any]] = field(default_factory=list)
    submit_headers: list[dict[str, str]] = field(default_factory=list)
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def submits(self) -> int:
        """How many submit requests created a prediction."""
        return self.counters["submits"]

    def job(self, prediction_id: str) -> Prediction:
        return self.predictions[prediction_id]


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return (
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat().replace("+00:00", "Z")
    )


def _seconds(value: str | None) -> float | None:
    match = _DURATION_RE.match(value or "")
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def create_app(state: ReplicateState) -> Starlette:
    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header in (f"Bearer {state.api_key}", f"Token {state.api_key}")

    def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
        return JSONResponse(
            {"title": title, "detail": detail, "status": status, **extra}, status_code=status
        )

    def unauthorised() -> JSONResponse:
        return problem(401, "Unauthenticated", "You did not pass a valid authentication token")

    def to_json(request: Request, p: Prediction) -> dict[str, Any]:
        now = time.monotonic()
        base = str(request.base_url).rstrip("/")
        status = state.status_override or p.status(now)
        wall = p.created_wall - p.created  # monotonic -> wall clock offset
        removed = status in ("succeeded", "failed") and now > p.ended() + state.output_ttl_s
        logs = ""
        if now >= p.starts:
            done = min(1.0, (min(now, p.ended()) - p.starts) / p.run_s) if p.run_s else 1.0
            steps = sorted({0, int(done * 100) // 25 * 25, int(done * 100)})
            logs = "".join(f"{s:3d}%|{'#' * (s // 10):<10}| {s}/100\n" for s in steps)
        terminal = status in ("succeeded", "failed", "canceled", "aborted")
        return {
            "id": p.id,
            "model": p.model,
            "version": p.version,
            "input": {} if removed else p.input,
            "logs": logs,
            "output": f"{base}/files/{p.id}.mp4" if status == "succeeded" and not removed else None,
            "data_removed": removed,
            "error": (NSFW_ERROR if p.outcome == "nsfw" else EXPLODE_ERROR)
            if status == "failed"
            else None,
            "status": status,
            "source": "api",
            "created_at": _iso(p.created_wall),
            "started_at": _iso(p.starts + wall)
            if now >= p.starts and status != "aborted"
            else None,
            "completed_at": _iso(p.ended() + wall) if terminal else None,
            "urls": {
                "get": f"{base}/v1/predictions/{p.id}",
                "cancel": f"{base}/v1/predictions/{p.id}/cancel",
                "web": f"https://replicate.com/p/{p.id}",
            },
            "metrics": {"predict_time": p.run_s} if status == "succeeded" else {},
        }

    async def create(request: Request, model: str | None, version: str | None) -> Response:
        if (fault := await state.faults.apply("submit")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        try:
            body = await request.json()
        except ValueError:
            return problem(400, "Bad request", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return problem(400, "Bad request", "The request body must be a JSON object")
        version = version or body.get("version")
        if model is None and not version:
            return problem(422, "Invalid version", "version is required")
        payload = body.get("input")
        if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
            return problem(
                422,
                "Input validation failed",
                "- input: prompt is required",
                invalid_fields=[
                    {
                        "type": "required",
                        "field": "input.prompt",
                        "description": "prompt is required",
                    }
                ],
            )
        prompt = payload["prompt"]
        now = time.monotonic()
        prediction = Prediction(
            id=secrets.token_hex(13)[:26],
            model=model,
            version=version,
            input=payload,
            created=now,
            created_wall=time.time(),
            queue_s=state.queue_s,
            run_s=state.run_s,
            outcome="nsfw" if "forbidden" in prompt else "error" if "explode" in prompt else "ok",
            deadline_s=_seconds(request.headers.get("cancel-after")),
        )
        with state.lock:
            state.predictions[prediction.id] = prediction
            state.submit_bodies.append(body)
            state.submit_headers.append(dict(request.headers))
            state.counters["submits"] += 1
        prefer = request.headers.get("prefer", "")
        if prefer.startswith("wait"):
            wait_s = min(60.0, _seconds(prefer.partition("=")[2]) or 60.0)
            await asyncio.sleep(max(0.0, min(prediction.ended() - now, wait_s)))
        if (fault := await state.faults.apply("submit_response")) is not None:
            return fault
        answer = to_json(request, prediction)
        return JSONResponse(answer, status_code=201, headers={"Location": answer["urls"]["get"]})

    async def create_for_model(request: Request) -> Response:
        p = request.path_params
        return await create(request, f"{p['owner']}/{p['name']}", None)

    async def create_for_version(request: Request) -> Response:
        return await create(request, None, None)

    async def create_for_deployment(request: Request) -> Response:
        p = request.path_params
        return await create(request, f"{p['owner']}/{p['name']}", "deployment")

    async def get(request: Request) -> Response:
        state.counters["status"] += 1
        if (fault := await state.faults.apply("status")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        prediction = state.predictions.get(request.path_params["id"])
        if prediction is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        prediction.polls += 1
        return JSONResponse(to_json(request, prediction))

    async def cancel(request: Request) -> Response:
        state.counters["cancel"] += 1
        if (fault := await state.faults.apply("cancel")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        prediction = state.predictions.get(request.path_params["id"])
        if prediction is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        now = time.monotonic()
        if prediction.status(now) in ("starting", "processing"):
            prediction.canceled_at = now
        return JSONResponse(to_json(request, prediction))

    async def download(request: Request) -> Response:
        state.counters["download"] += 1
        if (fault := await state.faults.apply("download")) is not None:
            return fault
        prediction = state.predictions.get(request.path_params["name"].removesuffix(".mp4"))
        now = time.monotonic()
        if (
            prediction is None
            or prediction.status(now) != "succeeded"
            or now > prediction.ended() + state.output_ttl_s
        ):
            return Response("Not Found", status_code=404, media_type="text/plain")
        prediction.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    return Starlette(
        routes=[
            Route("/v1/models/{owner}/{name}/predictions", create_for_model, methods=["POST"]),
            Route(
                "/v1/deployments/{owner}/{name}/predictions",
                create_for_deployment,
                methods=["POST"],
            ),
            Route("/v1/predictions", create_for_version, methods=["POST"]),
            Route("/v1/predictions/{id}", get, methods=["GET"]),
            Route("/v1/predictions/{id}/cancel", cancel, methods=["POST"]),
            Route("/files/{name}", download, methods=["GET"]),
        ]
    )
