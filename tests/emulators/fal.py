"""An emulator of fal.ai's queue API (``queue.fal.run``), for tests over real loopback HTTP.

Follows fal's documented protocol (docs.fal.ai, Inference API / queue reference):

* ``POST /{owner}/{app}[/{path}]`` with ``Authorization: Key <key>`` queues the JSON input
  and answers ``request_id``, ``status_url``, ``response_url``, ``cancel_url`` (those carry
  only owner/app), ``status: IN_QUEUE`` and ``queue_position``.
* ``GET /{owner}/{app}/requests/{id}/status`` answers 202 while ``IN_QUEUE`` (with a 0-based
  ``queue_position``) or ``IN_PROGRESS``, 200 once ``COMPLETED``; a failed request is
  ``COMPLETED`` with ``error`` (and ``error_type`` for request errors).
* ``GET /{owner}/{app}/requests/{id}`` answers what the model returned: 200 ``{"video":
  {"url": ...}}``, 422 ``{"detail": [{"type": "content_policy_violation", ...}]}`` when the
  prompt holds ``forbidden``, 500 ``{"detail": [{"type": "internal_server_error", ...}]}``
  when it holds ``explode``, 499 ``client_cancelled`` once cancelled, 400 while unfinished.
* ``PUT /{owner}/{app}/requests/{id}/cancel``: 202 ``CANCELLATION_REQUESTED``, 400
  ``ALREADY_COMPLETED`` or 404 ``NOT_FOUND``.
* ``GET /files/{id}.mp4`` is the "CDN": a real MP4, no key needed, 404 once ``output_ttl_s``
  has passed since completion.

Status is computed from elapsed time (``queue_s`` queued, then ``run_s`` running), so no
task runs per job and thousands of jobs cost only their dict entries. Faults can be scripted
per operation: ``submit`` (before the job exists), ``submit_response`` (after it was created:
the answer is lost), ``status``, ``result``, ``cancel``, ``download``.

Two routes under ``/_emulator/`` are not fal's: benchmarks use them to create many running
jobs at once (``POST /_emulator/jobs``) and to count what was polled (``GET
/_emulator/stats``).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.harness import Faults
from tests.emulators.media import sample_mp4

API_KEY = "fal-key-id:fal-key-secret-0123456789"
FLAGGED_MSG = (
    "The content could not be processed because it contained material flagged by a content checker."
)


@dataclass(slots=True)
class FalJob:
    id: str
    app: str
    endpoint: str
    input: dict[str, Any]
    created: float
    queue_s: float
    run_s: float
    outcome: str  # "ok", "nsfw" or "error"
    cancelled_at: float | None = None
    polls: int = 0
    result_fetches: int = 0
    downloads: int = 0

    @property
    def finishes(self) -> float:
        return self.created + self.queue_s + self.run_s

    def phase(self, now: float) -> str:
        """``queued``, ``running``, ``done`` or ``cancelled``."""
        if self.cancelled_at is not None and self.cancelled_at < self.finishes:
            return "cancelled" if now >= self.cancelled_at else self._timed(now)
        return self._timed(now)

    def _timed(self, now: float) -> str:
        if now < self.created + self.queue_s:
            return "queued"
        return "running" if now < self.finishes else "done"


@dataclass
class FalState:
    """The emulator's jobs, counters and knobs. Tests read and set these directly."""

    api_key: str = API_KEY
    queue_s: float = 0.3
    run_s: float = 0.5
    output_ttl_s: float = 3600.0
    queue_depth: int = 3
    status_override: str | None = None
    faults: Faults = field(default_factory=Faults)
    jobs: dict[str, FalJob] = field(default_factory=dict)
    submit_bodies: list[dict[str, Any]] = field(default_factory=list)
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def submits(self) -> int:
        """How many submit requests created a job."""
        return self.counters["submits"]

    def job(self, request_id: str) -> FalJob:
        return self.jobs[request_id]


def create_app(state: FalState) -> Starlette:
    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {state.api_key}"

    def unauthorised() -> JSONResponse:
        return JSONResponse(
            {"detail": "Authentication is required to perform this action."}, status_code=401
        )

    def lookup(request: Request) -> FalJob | None:
        job = state.jobs.get(request.path_params["request_id"])
        app = f"{request.path_params['owner']}/{request.path_params['app']}"
        return job if job is not None and job.app == app else None

    def urls(request: Request, job: FalJob) -> dict[str, str]:
        base = f"{str(request.base_url).rstrip('/')}/{job.app}/requests/{job.id}"
        return {
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    async def submit(request: Request) -> Response:
        if (fault := await state.faults.apply("submit")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        endpoint = request.path_params["endpoint"].strip("/")
        parts = endpoint.split("/")
        if len(parts) < 2:
            return JSONResponse({"detail": "Application not found"}, status_code=404)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "Request body is not valid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "Request body must be a JSON object"}, status_code=422)
        prompt = str(body.get("prompt", ""))
        outcome = "nsfw" if "forbidden" in prompt else "error" if "explode" in prompt else "ok"
        job = FalJob(
            id=str(uuid.uuid4()),
            app="/".join(parts[:2]),
            endpoint=endpoint,
            input=body,
            created=time.monotonic(),
            queue_s=state.queue_s,
            run_s=state.run_s,
            outcome=outcome,
        )
        with state.lock:
            state.jobs[job.id] = job
            state.submit_bodies.append(body)
            state.counters["submits"] += 1
        if (fault := await state.faults.apply("submit_response")) is not None:
            return fault
        return JSONResponse(
            {
                "status": "IN_QUEUE",
                "request_id": job.id,
                "queue_position": state.queue_depth - 1,
                **urls(request, job),
            }
        )

    async def status(request: Request) -> Response:
        state.counters["status"] += 1
        if (fault := await state.faults.apply("status")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        job = lookup(request)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        job.polls += 1
        if job.polls == 1:
            state.counters["polled_jobs"] += 1
        now = time.monotonic()
        phase = job.phase(now)
        body: dict[str, Any] = {"request_id": job.id, **urls(request, job), "logs": None}
        if state.status_override is not None:
            return JSONResponse({**body, "status": state.status_override}, status_code=202)
        if phase == "queued":
            remaining = job.created + job.queue_s - now
            position = min(state.queue_depth - 1, int(remaining / job.queue_s * state.queue_depth))
            return JSONResponse(
                {**body, "status": "IN_QUEUE", "queue_position": max(0, position)}, status_code=202
            )
        if phase == "running":
            return JSONResponse({**body, "status": "IN_PROGRESS"}, status_code=202)
        body["status"] = "COMPLETED"
        body["metrics"] = {"inference_time": job.run_s}
        if phase == "cancelled":
            body |= {
                "error": "Request was cancelled by the client",
                "error_type": "client_cancelled",
            }
        elif job.outcome == "nsfw":
            body["error"] = "Unprocessable Entity"
        elif job.outcome == "error":
            body |= {"error": "Internal Server Error", "error_type": "runner_server_error"}
        return JSONResponse(body, status_code=200)

    async def result(request: Request) -> Response:
        state.counters["result"] += 1
        if (fault := await state.faults.apply("result")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        job = lookup(request)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        job.result_fetches += 1
        phase = job.phase(time.monotonic())
        if phase == "cancelled":
            return JSONResponse(
                {"detail": "Request was cancelled by the client", "error_type": "client_cancelled"},
                status_code=499,
                headers={"X-Fal-Error-Type": "client_cancelled"},
            )
        if phase != "done":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if job.outcome == "nsfw":
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body", "prompt"],
                            "msg": FLAGGED_MSG,
                            "type": "content_policy_violation",
                            "url": "https://docs.fal.ai/errors/#content_policy_violation",
                            "input": job.input.get("prompt"),
                        }
                    ]
                },
                status_code=422,
                headers={"X-Fal-Retryable": "false"},
            )
        if job.outcome == "error":
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body"],
                            "msg": "Internal server error: the model exploded",
                            "type": "internal_server_error",
                            "url": "https://docs.fal.ai/errors/#internal_server_error",
                        }
                    ]
                },
                status_code=500,
                headers={"X-Fal-Retryable": "false"},
            )
        video_url = f"{str(request.base_url).rstrip('/')}/files/{job.id}.mp4"
        return JSONResponse(
            {
                "video": {
                    "url": video_url,
                    "content_type": "video/mp4",
                    "file_name": f"{job.id}.mp4",
                    "file_size": len(sample_mp4()),
                },
                "seed": job.input.get("seed", 42),
            }
        )

    async def cancel(request: Request) -> Response:
        state.counters["cancel"] += 1
        if (fault := await state.faults.apply("cancel")) is not None:
            return fault
        if not authorised(request):
            return unauthorised()
        job = lookup(request)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        now = time.monotonic()
        if job.phase(now) in ("done", "cancelled"):
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        job.cancelled_at = now
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    async def download(request: Request) -> Response:
        state.counters["download"] += 1
        if (fault := await state.faults.apply("download")) is not None:
            return fault
        job = state.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        now = time.monotonic()
        if (
            job is None
            or job.outcome != "ok"
            or job.phase(now) != "done"
            or now > job.finishes + state.output_ttl_s
        ):
            return Response("Not Found", status_code=404, media_type="text/plain")
        job.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    async def seed(request: Request) -> Response:
        """Not fal's: ``{"app": "owner/app", "ids": [...], "finish_at": [epoch s...]}``
        creates running jobs (no queue) that complete, successfully, at those times."""
        body = await request.json()
        app, wall, mono = str(body["app"]), time.time(), time.monotonic()
        with state.lock:
            for job_id, finish_at in zip(body["ids"], body["finish_at"], strict=True):
                state.jobs[job_id] = FalJob(
                    job_id, app, app, {}, mono, 0.0, max(0.0, finish_at - wall), "ok"
                )
        return JSONResponse({"jobs": len(state.jobs)})

    async def stats(request: Request) -> Response:
        """Not fal's: how many jobs there are, how many were polled at least once, and the
        prompts sent in more than one job (a soak's check that no run was paid twice)."""
        with state.lock:
            prompts = collections.Counter(j.input.get("prompt") for j in state.jobs.values())
        # seeded jobs have no prompt
        repeated = sorted(prompt for prompt, n in prompts.items() if prompt is not None and n > 1)
        return JSONResponse(
            {"jobs": len(state.jobs), **state.counters, "repeated_prompts": repeated}
        )

    return Starlette(
        routes=[
            Route("/_emulator/jobs", seed, methods=["POST"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
            Route("/files/{name}", download, methods=["GET"]),
            Route("/{owner}/{app}/requests/{request_id}/status", status, methods=["GET"]),
            Route("/{owner}/{app}/requests/{request_id}/cancel", cancel, methods=["PUT"]),
            Route("/{owner}/{app}/requests/{request_id}", result, methods=["GET"]),
            Route("/{endpoint:path}", submit, methods=["POST"]),
        ]
    )
