"""An emulator of NanoGPT's video API (``nano-gpt.com``), with vidgate's cancel extension.

It follows the documented surface (docs.nano-gpt.com, summarised in
the research notes on the NanoGPT API):

* ``POST /api/generate-video`` answers ``202`` with ``{runId, id, status: "pending", model,
  cost, paymentSource, remainingBalance}``. Errors use the submit envelope
  ``{"error": {"message", "type"}, "status": N}``: ``400 CONTENT_POLICY_VIOLATION`` when the
  prompt contains ``blocked``, ``401`` for a bad key, ``402 INSUFFICIENT_BALANCE`` when
  ``balance`` is below ``cost``;
* ``GET /api/video/status?requestId=`` (alias ``runId``) answers the nested shape
  (``data.status`` upper case: ``IN_QUEUE``, ``IN_PROGRESS``, ``COMPLETED``, ``FAILED``,
  ``CANCELED``) *and* the flat fields (``status`` lower case, ``progress``, ``videoUrl``,
  ``error``...). On success ``data.output.video.url`` is, by default, the *relative*
  ``/api/generate-video/content?...`` URL live clients have reported; with
  ``relative_urls`` off it is the absolute file URL. Failures carry ``error``,
  ``isNSFWError`` and ``userFriendlyError``. Errors use ``{"error": <code>, "message"}``;
  another key's job is ``403``;
* ``GET /api/generate-video/content?runId=&model=`` needs the key and redirects (``302``) to
  the file, the way NanoGPT redirects to pre-signed storage; ``files_base_url`` can point
  that redirect at another origin (a second server over the same emulator);
* ``GET /files/{runId}.mp4`` serves the video without auth and is ``404`` once
  ``output_ttl_s`` has passed;
* ``POST /api/generate-video/cancel`` with ``{"runId"}`` is vidgate's extension (NanoGPT
  documents no cancel); with ``cancel_supported`` off it is ``404`` as on nano-gpt.com;
* ``Idempotency-Key`` on a submit is vidgate's extension too (NanoGPT documents none, so by
  default it is ignored): with ``idempotency_keys`` on, a repeat of a key by the same API key
  answers the first answer again and creates nothing, even when that first answer was lost
  on its way; the same key with another body is ``409``.

Auth: ``x-api-key: KEY`` or ``Authorization: Bearer KEY``; ``other_keys`` are valid keys of
other accounts. Scripted outcomes, by prompt: ``blocked`` is refused at submit; ``forbidden``
fails with ``isNSFWError``; ``explode`` fails with an error. Time drives the state:
``queue_s`` seconds ``IN_QUEUE``, then ``run_s`` seconds ``IN_PROGRESS`` with a rising
``progress``, then the outcome.

Fault operations: ``submit`` (before the job exists), ``submit_response`` (after it was
created: the answer is lost), ``status``, ``cancel``, ``download`` (both the content redirect
and the file).
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.emulators.harness import Faults
from tests.emulators.media import sample_mp4

_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"
NSFW_MESSAGE = "This content was flagged as inappropriate. Please change your prompt and try again."
_KNOBS = (
    "api_key",
    "other_keys",
    "queue_s",
    "run_s",
    "output_ttl_s",
    "cost",
    "balance",
    "relative_urls",
    "cancel_supported",
    "cancel_spelling",
    "files_base_url",
    "idempotency_keys",
)
_FLAT = {
    "IN_QUEUE": "queued",
    "IN_PROGRESS": "processing",
    "COMPLETED": "completed",
    "FAILED": "failed",
}


@dataclass
class NanoJob:
    run_id: str
    model: str
    prompt: str
    owner: str
    created: float
    created_at: str
    cancelled_at: float | None = None
    polls: int = 0
    downloads: int = 0


def submit_error(status: int, message: str, kind: str) -> JSONResponse:
    """The submit envelope: ``{"error": {"message", "type"}, "status": N}``."""
    return JSONResponse(
        {"error": {"message": message, "type": kind}, "status": status}, status_code=status
    )


def plain_error(status: int, message: str) -> JSONResponse:
    """The ``Error`` schema of the status routes: ``{"error": <code>, "message"}``."""
    return JSONResponse({"error": status, "message": message}, status_code=status)


class NanoGPTEmulator:
    """Holds the state (jobs, counters, knobs) and the Starlette ``app``."""

    def __init__(
        self,
        *,
        api_key: str = "sk-nano-test-key",
        other_keys: tuple[str, ...] = (),
        queue_s: float = 0.3,
        run_s: float = 0.5,
        output_ttl_s: float = 120.0,
        cost: float = 0.35,
        balance: float | None = None,
        relative_urls: bool = True,
        cancel_supported: bool = True,
        cancel_spelling: str = "CANCELED",
        files_base_url: str | None = None,
        idempotency_keys: bool = False,
    ) -> None:
        self.api_key = api_key
        self.other_keys = other_keys
        self.queue_s = queue_s
        self.run_s = run_s
        self.output_ttl_s = output_ttl_s
        self.cost = cost
        self.balance = balance
        self.relative_urls = relative_urls
        self.cancel_supported = cancel_supported
        self.cancel_spelling = cancel_spelling
        self.files_base_url = files_base_url
        self.idempotency_keys = idempotency_keys
        self.keyed: dict[tuple[str, str], tuple[dict[str, Any], NanoJob]] = {}
        """(API key, Idempotency-Key) -> the first submit's body and job."""
        self.faults = Faults()
        self.jobs: dict[str, NanoJob] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.submit_bodies: list[dict[str, Any]] = []
        self.file_requests_with_key = 0
        self._lock = threading.Lock()
        self._defaults = {name: getattr(self, name) for name in _KNOBS}
        self.app = Starlette(
            routes=[
                Route("/api/generate-video", self._submit, methods=["POST"]),
                Route("/api/video/status", self._status, methods=["GET"]),
                Route("/api/generate-video/cancel", self._cancel, methods=["POST"]),
                Route("/api/generate-video/content", self._content, methods=["GET"]),
                Route("/files/{run_id}.mp4", self._file, methods=["GET"]),
            ]
        )

    @property
    def submits(self) -> int:
        """How many submit requests created a job."""
        return len(self.submit_bodies)

    def reset(self) -> None:
        """Forget every job, counter, fault and knob change."""
        with self._lock:
            self.jobs.clear()
            self.keyed.clear()
            self.submit_bodies.clear()
            self.requests.clear()
        self.faults.clear()
        for name, value in self._defaults.items():
            setattr(self, name, value)
        self.file_requests_with_key = 0

    def _caller(self, request: Request) -> str | None:
        """The key the request authenticates with, or ``None``."""
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        return key if key in (self.api_key, *self.other_keys) else None

    # -- routes ------------------------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        self.requests["submit"] += 1
        if (fault := await self.faults.apply("submit")) is not None:
            return fault
        caller = self._caller(request)
        if caller is None:
            return submit_error(401, "Invalid or missing API key", "authentication_error")
        try:
            body = await request.json()
        except ValueError:
            return submit_error(400, "The request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return submit_error(400, "'model' is required", "invalid_request_error")
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            return submit_error(400, "'prompt' must be a string", "invalid_request_error")
        key = request.headers.get("idempotency-key") if self.idempotency_keys else None
        if key is not None and (caller, key) in self.keyed:
            first, job = self.keyed[caller, key]
            if first != body:
                return submit_error(
                    409, "This Idempotency-Key was used with another body", "idempotency_conflict"
                )
            return self._accepted(job)
        if prompt and "blocked" in prompt.lower():
            return submit_error(
                400,
                "Your prompt was blocked by the safety filter. Please change it and try again.",
                "CONTENT_POLICY_VIOLATION",
            )
        if self.balance is not None and self.balance < self.cost:
            return submit_error(402, "Insufficient balance", "INSUFFICIENT_BALANCE")
        if self.balance is not None:
            self.balance -= self.cost
        job = NanoJob(
            run_id="vid_" + "".join(secrets.choice(_BASE32) for _ in range(26)),
            model=body["model"],
            prompt=prompt or "",
            owner=caller,
            created=time.monotonic(),
            created_at=_iso(time.time()),
        )
        with self._lock:
            self.jobs[job.run_id] = job
            self.submit_bodies.append(body)
            if key is not None:
                self.keyed[caller, key] = (body, job)
        if (fault := await self.faults.apply("submit_response")) is not None:
            return fault
        return self._accepted(job)

    def _accepted(self, job: NanoJob) -> JSONResponse:
        return JSONResponse(
            {
                "runId": job.run_id,
                "id": job.run_id,
                "status": "pending",
                "model": job.model,
                "cost": self.cost,
                "paymentSource": "USD",
                "remainingBalance": self.balance,
            },
            status_code=202,
        )

    async def _status(self, request: Request) -> Response:
        self.requests["status"] += 1
        if (fault := await self.faults.apply("status")) is not None:
            return fault
        found = self._find(request, request.query_params.get("requestId") or "")
        if isinstance(found, Response):
            return found
        found.polls += 1
        return JSONResponse(self._status_json(found, str(request.base_url)))

    async def _cancel(self, request: Request) -> Response:
        self.requests["cancel"] += 1
        if (fault := await self.faults.apply("cancel")) is not None:
            return fault
        if not self.cancel_supported:
            return plain_error(404, "Not found")
        try:
            body = await request.json()
        except ValueError:
            body = None
        run_id = body.get("runId") if isinstance(body, dict) else None
        found = self._find(request, run_id if isinstance(run_id, str) else "")
        if isinstance(found, Response):
            return found
        if self._state(found)[0] in ("IN_QUEUE", "IN_PROGRESS"):
            found.cancelled_at = time.monotonic()
        return JSONResponse(self._status_json(found, str(request.base_url)))

    async def _content(self, request: Request) -> Response:
        self.requests["download"] += 1
        if (fault := await self.faults.apply("download")) is not None:
            return fault
        found = self._find(request, request.query_params.get("runId") or "")
        if isinstance(found, Response):
            return found
        if self._state(found)[0] != "COMPLETED" or self._expired(found):
            return plain_error(404, "Video not available")
        root = (self.files_base_url or str(request.base_url)).rstrip("/")
        return RedirectResponse(f"{root}/files/{found.run_id}.mp4?sig=emulated", status_code=302)

    async def _file(self, request: Request) -> Response:
        self.requests["download"] += 1
        if (fault := await self.faults.apply("download")) is not None:
            return fault
        if request.headers.get("x-api-key") or request.headers.get("authorization"):
            self.file_requests_with_key += 1
        job = self.jobs.get(request.path_params["run_id"])
        if job is None or self._state(job)[0] != "COMPLETED" or self._expired(job):
            return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="text/xml")
        job.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    def _find(self, request: Request, run_id: str) -> NanoJob | Response:
        caller = self._caller(request)
        if caller is None:
            return plain_error(401, "Invalid or missing API key")
        if not run_id:
            return plain_error(400, "requestId is required")
        job = self.jobs.get(run_id)
        if job is None:
            return plain_error(404, "Video job not found")
        if job.owner != caller:
            return plain_error(403, "This video job belongs to another account")
        return job

    # -- the clock ---------------------------------------------------------------------------

    def _ends_at(self, job: NanoJob) -> float:
        return job.created + self.queue_s + self.run_s

    def _expired(self, job: NanoJob) -> bool:
        return time.monotonic() > self._ends_at(job) + self.output_ttl_s

    def _state(self, job: NanoJob) -> tuple[str, float]:
        """(nested status, progress 0-100) now."""
        if job.cancelled_at is not None:
            return "CANCELLED", 0.0
        elapsed = time.monotonic() - job.created
        if elapsed < self.queue_s:
            return "IN_QUEUE", 0.0
        if elapsed < self.queue_s + self.run_s:
            return "IN_PROGRESS", round(100 * (elapsed - self.queue_s) / self.run_s, 1)
        words = job.prompt.lower()
        if "forbidden" in words or "explode" in words:
            return "FAILED", 0.0
        return "COMPLETED", 100.0

    def _status_json(self, job: NanoJob, base_url: str) -> dict[str, Any]:
        status, progress = self._state(job)
        data: dict[str, Any] = {"status": status, "requestId": job.run_id}
        flat: dict[str, Any] = {
            "requestId": job.run_id,
            "model": job.model,
            "status": _FLAT.get(status, "cancelled"),
            "progress": progress if status in ("IN_PROGRESS", "COMPLETED") else None,
            "estimatedTimeRemaining": None,
            "videoUrl": None,
            "error": None,
            "createdAt": job.created_at,
            "completedAt": None,
        }
        if status == "IN_PROGRESS":
            data["details"] = "Video is being generated"
        elif status == "CANCELLED":
            data["status"] = self.cancel_spelling
        elif status == "COMPLETED":
            if self.relative_urls:
                url = (
                    f"/api/generate-video/content?model={job.model}&runId={job.run_id}"
                    "&variant=video"
                )
            else:
                root = (self.files_base_url or base_url).rstrip("/")
                url = f"{root}/files/{job.run_id}.mp4?sig=emulated"
            data["output"] = {"video": {"url": url}}
            data["cost"] = self.cost
            flat["videoUrl"] = url
            flat["completedAt"] = _iso(time.time())
        elif status == "FAILED":
            if "forbidden" in job.prompt.lower():
                data["error"] = "Content policy violation"
                data["isNSFWError"] = True
                data["userFriendlyError"] = NSFW_MESSAGE
            else:
                data["error"] = "Provider error: the generation crashed"
                data["isNSFWError"] = False
            flat["error"] = data["error"]
        return {**flat, "data": data}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
