"""An emulator of Runway's task API (``api.dev.runwayml.com``).

It follows the documented surface (the ``runwayml`` SDK and docs.dev.runwayml.com):

* ``POST /v1/text_to_video`` and ``POST /v1/image_to_video`` create a task and answer
  ``{"id": ...}``. Every request needs ``Authorization: Bearer KEY`` (``401`` otherwise) and
  ``X-Runway-Version: 2024-11-06`` (``400`` otherwise). Bad inputs are ``400`` with a JSON
  ``error`` member holding a readable explanation;
* ``GET /v1/tasks/{id}`` answers ``{id, createdAt, status}`` with ``status`` one of
  ``PENDING``, ``THROTTLED``, ``RUNNING`` (plus ``progress`` from 0 to 1), ``SUCCEEDED`` (plus
  ``output``: a list of URLs), ``FAILED`` (plus ``failure`` and ``failureCode``) or
  ``CANCELLED``;
* ``DELETE /v1/tasks/{id}`` answers ``204``: it cancels a pending, throttled or running task
  and deletes any other one (a deleted task is ``404`` afterwards);
* outputs are served by the emulator at ``/outputs/{id}/{n}.mp4`` without auth, as Runway's
  pre-signed URLs are, and are ``404`` once ``output_ttl_s`` has passed (Runway's expire
  within 24-48 hours).

Scripted outcomes, by prompt: ``forbidden`` fails with ``SAFETY.INPUT.TEXT``; ``explode``
fails with ``INTERNAL.BAD_OUTPUT.CODE01``. Time drives the state: ``queue_s`` seconds
``PENDING`` (the first ``throttled_s`` of them ``THROTTLED``), then ``run_s`` seconds
``RUNNING`` with progress rising from 0 to 1, then the outcome. Runway asks clients not to
poll a task more than once every five seconds; the emulator does not enforce it.

Fault operations: ``submit`` (before the task exists), ``submit_response`` (after it was
created: the answer is lost), ``status``, ``cancel``, ``download``.
"""

from __future__ import annotations

import collections
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.harness import Faults
from tests.emulators.media import sample_mp4

API_VERSION = "2024-11-06"
_RATIO_RE = re.compile(r"^\d{3,4}:\d{3,4}$")


@dataclass
class RunwayTask:
    task_id: str
    endpoint: str
    prompt: str
    created: float
    created_at: str
    cancelled_at: float | None = None
    deleted: bool = False
    polls: int = 0
    downloads: int = 0


def runway_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class RunwayEmulator:
    """Holds the state (tasks, counters, knobs) and the Starlette ``app``."""

    def __init__(
        self,
        *,
        api_key: str = "runway-test-key",
        queue_s: float = 0.3,
        run_s: float = 0.5,
        throttled_s: float = 0.0,
        output_ttl_s: float = 120.0,
    ) -> None:
        self.api_key = api_key
        self.queue_s = queue_s
        self.run_s = run_s
        self.throttled_s = throttled_s
        self.output_ttl_s = output_ttl_s
        self.faults = Faults()
        self.tasks: dict[str, RunwayTask] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.submit_bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._defaults = (api_key, queue_s, run_s, throttled_s, output_ttl_s)
        self.app = Starlette(
            routes=[
                Route("/v1/text_to_video", self._text_to_video, methods=["POST"]),
                Route("/v1/image_to_video", self._image_to_video, methods=["POST"]),
                Route("/v1/tasks/{task_id}", self._task, methods=["GET", "DELETE"]),
                Route("/outputs/{task_id}/{index:int}.mp4", self._download, methods=["GET"]),
            ]
        )

    @property
    def submits(self) -> int:
        """How many submit requests created a task."""
        return len(self.submit_bodies)

    def reset(self) -> None:
        """Forget every task, counter, fault and knob change."""
        with self._lock:
            self.tasks.clear()
            self.submit_bodies.clear()
            self.requests.clear()
        self.faults.clear()
        (self.api_key, self.queue_s, self.run_s, self.throttled_s, self.output_ttl_s) = (
            self._defaults
        )

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return runway_error(401, "The provided API key is not valid.")
        if request.headers.get("x-runway-version") != API_VERSION:
            return runway_error(
                400,
                f"The X-Runway-Version header must be set to a supported version ({API_VERSION}).",
            )
        return None

    # -- routes ------------------------------------------------------------------------------

    async def _text_to_video(self, request: Request) -> Response:
        return await self._submit(request, "text_to_video")

    async def _image_to_video(self, request: Request) -> Response:
        return await self._submit(request, "image_to_video")

    async def _submit(self, request: Request, endpoint: str) -> Response:
        self.requests["submit"] += 1
        if (fault := await self.faults.apply("submit")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return runway_error(400, "The request body is not valid JSON.")
        problem = _validate(body, endpoint)
        if problem:
            return runway_error(400, problem)
        now = time.time()
        task = RunwayTask(
            task_id=str(uuid.uuid4()),
            endpoint=endpoint,
            prompt=str(body.get("promptText") or ""),
            created=time.monotonic(),
            created_at=datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        )
        with self._lock:
            self.tasks[task.task_id] = task
            self.submit_bodies.append({"endpoint": endpoint, **body})
        if (fault := await self.faults.apply("submit_response")) is not None:
            return fault
        return JSONResponse({"id": task.task_id})

    async def _task(self, request: Request) -> Response:
        operation = "status" if request.method == "GET" else "cancel"
        self.requests[operation] += 1
        if (fault := await self.faults.apply(operation)) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or task.deleted:
            return runway_error(404, "Task not found.")
        if request.method == "DELETE":
            if self._state(task)[0] in ("PENDING", "THROTTLED", "RUNNING"):
                task.cancelled_at = time.monotonic()
            else:
                task.deleted = True
            return Response(status_code=204)
        task.polls += 1
        return JSONResponse(self._task_json(task, str(request.base_url)))

    async def _download(self, request: Request) -> Response:
        self.requests["download"] += 1
        if (fault := await self.faults.apply("download")) is not None:
            return fault
        task = self.tasks.get(request.path_params["task_id"])
        if (
            task is None
            or task.deleted
            or request.path_params["index"] != 0
            or self._state(task)[0] != "SUCCEEDED"
            or time.monotonic() > self._ends_at(task) + self.output_ttl_s
        ):
            return Response("<Error><Code>NotFound</Code></Error>", 404, media_type="text/xml")
        task.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    # -- the clock ---------------------------------------------------------------------------

    def _ends_at(self, task: RunwayTask) -> float:
        return task.created + self.queue_s + self.run_s

    def _state(self, task: RunwayTask) -> tuple[str, float]:
        """(status, progress 0-1) now."""
        if task.cancelled_at is not None:
            return "CANCELLED", 0.0
        elapsed = time.monotonic() - task.created
        if elapsed < self.queue_s:
            return ("THROTTLED" if elapsed < self.throttled_s else "PENDING"), 0.0
        if elapsed < self.queue_s + self.run_s:
            return "RUNNING", round((elapsed - self.queue_s) / self.run_s, 3) if self.run_s else 0.0
        words = task.prompt.lower()
        if "forbidden" in words or "explode" in words:
            return "FAILED", 0.0
        return "SUCCEEDED", 1.0

    def _task_json(self, task: RunwayTask, base_url: str) -> dict[str, Any]:
        status, progress = self._state(task)
        body: dict[str, Any] = {"id": task.task_id, "createdAt": task.created_at, "status": status}
        if status == "RUNNING":
            body["progress"] = progress
        elif status == "SUCCEEDED":
            body["output"] = [f"{base_url.rstrip('/')}/outputs/{task.task_id}/0.mp4?_jwt=emulated"]
        elif status == "FAILED":
            if "forbidden" in task.prompt.lower():
                body["failure"] = "Prompt text did not pass content moderation."
                body["failureCode"] = "SAFETY.INPUT.TEXT"
            else:
                body["failure"] = "The generation was rejected by internal quality checks."
                body["failureCode"] = "INTERNAL.BAD_OUTPUT.CODE01"
        return body


def _validate(body: object, endpoint: str) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Required"
    prompt = body.get("promptText")
    if prompt is not None and (not isinstance(prompt, str) or not 0 < len(prompt) <= 1000):
        return "promptText: must be a non-empty string of at most 1000 characters"
    if endpoint == "text_to_video" and prompt is None:
        return "promptText: Required"
    image = body.get("promptImage")
    if endpoint == "image_to_video":
        if image is None:
            return "promptImage: Required"
        uris = [image] if isinstance(image, str) else [i.get("uri") for i in image or []]
        if not uris or not all(
            isinstance(u, str) and u.startswith(("https://", "data:image/")) for u in uris
        ):
            return "promptImage: must be an HTTPS URL or a data URI"
    if not isinstance(body.get("ratio"), str) or not _RATIO_RE.match(body["ratio"]):
        return "ratio: Required, like 1280:720"
    duration = body.get("duration")
    if duration is not None and (not isinstance(duration, int) or not 2 <= duration <= 10):
        return "duration: must be an integer from 2 to 10"
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= 4294967295):
        return "seed: must be an integer from 0 to 4294967295"
    return None
