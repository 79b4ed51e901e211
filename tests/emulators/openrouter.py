"""An emulator of OpenRouter's video API (``/api/v1/videos``), for tests over real loopback
HTTP.

Follows the documented protocol (the video generation guide, API reference "Videos", the
OpenAPI file's ``/videos`` paths):

* ``POST /api/v1/videos`` with ``Authorization: Bearer <key>`` and a JSON body (``model``,
  ``prompt``, ``duration``, ``resolution``, ``aspect_ratio``, ``seed``, ``frame_images``)
  answers ``202 {id, polling_url, status: "pending"}``; ``polling_url`` is relative (as in
  the OpenAPI examples) unless ``absolute_polling_url`` is set (as in the guide). Errors are
  ``{"error": {"code": N, "message"}}`` with the same status: 401 for a wrong key, 400 for a
  missing prompt, 402 when ``out_of_credit``, and 400 with a content-policy message for a
  prompt holding ``forbidden`` when ``moderate_at_submit`` is set.
* ``GET /api/v1/videos/{id}``: ``pending`` (``queue_s``), ``in_progress`` (``run_s``), then
  ``completed`` with ``unsigned_urls`` (the content proxy) and, when ``signed_urls`` is set,
  ``urls`` (a signed link that needs no key), and ``usage: {cost, is_byok}``; or ``failed``
  with ``error`` a string (a prompt holding ``forbidden``: a content-policy message;
  ``explode``: a provider error); ``expired`` for a prompt holding ``job-expires``;
  ``cancelled`` for one holding ``job-cancelled``.
* ``GET /api/v1/videos/{id}/content?index=N`` streams the MP4 (the key is required); the
  signed link ``/signed/{id}?sig=...`` serves it without one.

No cancel endpoint is documented, and none is served. Faults can be scripted per
operation: ``submit`` (before the job exists), ``submit_response`` (after it was created:
the answer is lost), ``status`` and ``download``.
"""

from __future__ import annotations

import collections
import hashlib
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

API_KEY = "sk-or-v1-emulated0123456789abcdef0123456789abcdef"
COST_USD = 0.5


@dataclass
class VideoJob:
    id: str
    model: str
    prompt: str
    created: float
    queue_s: float
    run_s: float
    outcome: str  # "ok", "nsfw", "error", "expired" or "cancelled"
    polls: int = 0
    downloads: int = 0

    def status(self, now: float) -> str:
        if now < self.created + self.queue_s:
            return "pending"
        if now < self.created + self.queue_s + self.run_s:
            return "in_progress"
        return {"ok": "completed", "nsfw": "failed", "error": "failed"}.get(
            self.outcome, self.outcome
        )


@dataclass
class OpenRouterState:
    """The emulator's jobs, counters and knobs. Tests read and set these directly."""

    api_key: str = API_KEY
    queue_s: float = 0.3
    run_s: float = 0.5
    signed_urls: bool = False
    absolute_polling_url: bool = False
    moderate_at_submit: bool = False
    out_of_credit: bool = False
    status_override: str | None = None
    output_ttl_s: float = 3600.0
    faults: Faults = field(default_factory=Faults)
    jobs: dict[str, VideoJob] = field(default_factory=dict)
    submit_bodies: list[dict[str, Any]] = field(default_factory=list)
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def submits(self) -> int:
        """How many submit requests created a job."""
        return self.counters["submits"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def _signature(job_id: str) -> str:
    return hashlib.sha256(f"signed:{job_id}".encode()).hexdigest()[:32]


def _outcome(prompt: str) -> str:
    for word, outcome in (
        ("forbidden", "nsfw"),
        ("explode", "error"),
        ("job-expires", "expired"),
        ("job-cancelled", "cancelled"),
    ):
        if word in prompt:
            return outcome
    return "ok"


def create_app(state: OpenRouterState) -> Starlette:
    def unauthorised(request: Request) -> JSONResponse | None:
        if request.headers.get("authorization", "") == f"Bearer {state.api_key}":
            return None
        return _error(401, "No auth credentials found")

    def to_json(request: Request, job: VideoJob) -> dict[str, Any]:
        status = state.status_override or job.status(time.monotonic())
        body: dict[str, Any] = {
            "id": job.id,
            "polling_url": f"/api/v1/videos/{job.id}",
            "status": status,
        }
        if status == "completed":
            base = str(request.base_url).rstrip("/")
            body["unsigned_urls"] = [f"{base}/api/v1/videos/{job.id}/content?index=0"]
            if state.signed_urls:
                body["urls"] = [f"{base}/signed/{job.id}?sig={_signature(job.id)}"]
            body["usage"] = {"cost": COST_USD, "is_byok": False}
            body["generation_id"] = f"gen-{job.id}"
        elif status == "failed":
            body["error"] = (
                "Request blocked by the provider's content policy"
                if job.outcome == "nsfw"
                else "Upstream provider error: the model exploded"
            )
        return body

    async def create(request: Request) -> Response:
        if (fault := await state.faults.apply("submit")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _error(400, "prompt: Required")
        if not isinstance(body.get("model"), str):
            return _error(400, "model: Required")
        if state.out_of_credit:
            return _error(402, "Insufficient credits. Add more using https://openrouter.ai/credits")
        if state.moderate_at_submit and "forbidden" in prompt:
            return _error(400, "Prompt rejected by the provider's content policy")
        job = VideoJob(
            id=f"vgen-{secrets.token_hex(12)}",
            model=body["model"],
            prompt=prompt,
            created=time.monotonic(),
            queue_s=state.queue_s,
            run_s=state.run_s,
            outcome=_outcome(prompt),
        )
        with state.lock:
            state.jobs[job.id] = job
            state.submit_bodies.append(body)
            state.counters["submits"] += 1
        if (fault := await state.faults.apply("submit_response")) is not None:
            return fault
        polling = f"/api/v1/videos/{job.id}"
        if state.absolute_polling_url:
            polling = str(request.base_url).rstrip("/") + polling
        return JSONResponse(
            {"id": job.id, "polling_url": polling, "status": "pending"}, status_code=202
        )

    async def retrieve(request: Request) -> Response:
        state.counters["status"] += 1
        if (fault := await state.faults.apply("status")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        job = state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "Video generation job not found")
        job.polls += 1
        return JSONResponse(to_json(request, job))

    def serve(job: VideoJob | None) -> Response:
        if job is None:
            return _error(404, "Video generation job not found")
        now = time.monotonic()
        if job.status(now) != "completed":
            return _error(400, "Video is not ready")
        if now > job.created + job.queue_s + job.run_s + state.output_ttl_s:
            return _error(404, "Video content has expired")
        job.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    async def content(request: Request) -> Response:
        state.counters["download"] += 1
        if (fault := await state.faults.apply("download")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        if request.query_params.get("index", "0") != "0":
            return _error(404, "No video at that index")
        return serve(state.jobs.get(request.path_params["job_id"]))

    async def signed(request: Request) -> Response:
        state.counters["download"] += 1
        if (fault := await state.faults.apply("download")) is not None:
            return fault
        job_id = request.path_params["job_id"]
        if request.query_params.get("sig") != _signature(job_id):
            return _error(403, "Invalid signature")
        return serve(state.jobs.get(job_id))

    return Starlette(
        routes=[
            Route("/api/v1/videos", create, methods=["POST"]),
            Route("/api/v1/videos/{job_id}", retrieve, methods=["GET"]),
            Route("/api/v1/videos/{job_id}/content", content, methods=["GET"]),
            Route("/signed/{job_id}", signed, methods=["GET"]),
        ]
    )
