"""An emulator of OpenAI's Videos API (``/v1/videos``), for tests over real loopback HTTP.

Follows the documented protocol (API reference "Videos", the ``openai`` client's
``resources/videos.py``):

* ``POST /v1/videos`` with ``Authorization: Bearer <key>`` and a JSON body (``model``,
  ``prompt``, ``seconds`` in ``"4"``/``"8"``/``"12"``, ``size``, ``input_reference``) answers
  the ``video`` object. Errors use ``{"error": {"message", "type", "param", "code"}}``: 401
  ``invalid_api_key`` (the key echoed masked, as OpenAI does), 400 for a missing prompt or a
  bad ``seconds``/``size``, and 400 ``moderation_blocked`` for a prompt holding ``forbidden``
  when ``moderate_at_submit`` is set.
* ``GET /v1/videos/{id}``: ``queued`` (``queue_s``), ``in_progress`` with ``progress``
  (``run_s``), then ``completed`` (``expires_at`` = completion + ``output_ttl_s``) or
  ``failed`` with ``error.code`` ``moderation_blocked`` (prompt holds ``forbidden``) or
  ``internal_error`` (prompt holds ``explode``). Unfinished answers carry the
  ``openai-poll-after-ms`` header.
* ``GET /v1/videos/{id}/content`` streams the MP4 (the key is required), 404 before
  completion and after ``expires_at``.
* ``DELETE /v1/videos/{id}`` deletes the video (the API has no cancel): later GETs are 404.

Status is computed from elapsed time, so no task runs per video. Faults can be scripted per
operation: ``submit`` (before the video exists), ``submit_response`` (after it was created:
the answer is lost), ``status``, ``cancel`` (the DELETE), ``download`` (the content).
"""

from __future__ import annotations

import collections
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

API_KEY = "sk-proj-emulated0123456789abcdefABCDEF"
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


@dataclass
class Video:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created: float
    created_wall: float
    queue_s: float
    run_s: float
    outcome: str  # "ok", "nsfw" or "error"
    deleted_at: float | None = None
    polls: int = 0
    downloads: int = 0

    @property
    def starts(self) -> float:
        return self.created + self.queue_s

    @property
    def finishes(self) -> float:
        return self.starts + self.run_s

    def status(self, now: float) -> str:
        if now < self.starts:
            return "queued"
        if now < self.finishes:
            return "in_progress"
        return "completed" if self.outcome == "ok" else "failed"


@dataclass
class OpenAIState:
    """The emulator's videos, counters and knobs. Tests read and set these directly."""

    api_key: str = API_KEY
    queue_s: float = 0.3
    run_s: float = 0.5
    output_ttl_s: float = 3600.0
    poll_after_ms: int = 1000
    moderate_at_submit: bool = False
    status_override: str | None = None
    faults: Faults = field(default_factory=Faults)
    videos: dict[str, Video] = field(default_factory=dict)
    deleted: dict[str, Video] = field(default_factory=dict)
    submit_bodies: list[dict[str, Any]] = field(default_factory=list)
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def submits(self) -> int:
        """How many submit requests created a video."""
        return self.counters["submits"]

    def job(self, video_id: str) -> Video:
        return self.videos.get(video_id) or self.deleted[video_id]


def _error(status: int, message: str, code: str | None, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        },
        status_code=status,
    )


def _masked(key: str) -> str:
    return f"{key[:3]}{'*' * 12}{key[-4:]}" if len(key) > 8 else "***"


def create_app(state: OpenAIState) -> Starlette:
    def unauthorised(request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        if header == f"Bearer {state.api_key}":
            return None
        given = header.removeprefix("Bearer ").strip()
        if not given:
            return _error(401, "You didn't provide an API key.", None)
        return _error(
            401,
            f"Incorrect API key provided: {_masked(given)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )

    def not_found(video_id: str) -> JSONResponse:
        return _error(404, f"Video with id '{video_id}' not found.", None, "video_id")

    def to_json(video: Video) -> dict[str, Any]:
        now = time.monotonic()
        wall = video.created_wall - video.created
        status = state.status_override or video.status(now)
        if status == "queued":
            progress = 0
        elif status == "in_progress":
            progress = min(99, int((now - video.starts) / video.run_s * 100))
        else:
            progress = 100
        done = status in ("completed", "failed")
        error = None
        if status == "failed" and video.outcome == "nsfw":
            error = {
                "code": "moderation_blocked",
                "message": "Your request was blocked by our moderation system.",
            }
        elif status == "failed":
            error = {
                "code": "internal_error",
                "message": "Video generation failed: the model exploded.",
            }
        return {
            "id": video.id,
            "object": "video",
            "model": video.model,
            "status": status,
            "progress": progress,
            "created_at": int(video.created_wall),
            "completed_at": int(video.finishes + wall) if done else None,
            "expires_at": int(video.finishes + wall + state.output_ttl_s)
            if status == "completed"
            else None,
            "prompt": video.prompt,
            "seconds": video.seconds,
            "size": video.size,
            "remixed_from_video_id": None,
            "error": error,
        }

    async def create(request: Request) -> Response:
        if (fault := await state.faults.apply("submit")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "This emulator accepts JSON bodies only.", "invalid_request")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", None)
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", None)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _error(
                400, "Missing required parameter: 'prompt'.", "missing_required_parameter", "prompt"
            )
        seconds = body.get("seconds", "4")
        if seconds not in SECONDS:
            return _error(
                400,
                f"Invalid value: '{seconds}'. Supported values are: 'Four', 'Eight' and 'Twelve' "
                "seconds ('4', '8', '12').",
                "invalid_value",
                "seconds",
            )
        size = body.get("size", "720x1280")
        if size not in SIZES:
            return _error(
                400,
                f"Invalid value: '{size}'. Supported values are: {', '.join(SIZES)}.",
                "invalid_value",
                "size",
            )
        if state.moderate_at_submit and "forbidden" in prompt:
            return _error(
                400, "Your request was blocked by our moderation system.", "moderation_blocked"
            )
        video = Video(
            id=f"video_{secrets.token_hex(24)}",
            model=str(body.get("model", "sora-2")),
            prompt=prompt,
            seconds=seconds,
            size=size,
            created=time.monotonic(),
            created_wall=time.time(),
            queue_s=state.queue_s,
            run_s=state.run_s,
            outcome="nsfw" if "forbidden" in prompt else "error" if "explode" in prompt else "ok",
        )
        with state.lock:
            state.videos[video.id] = video
            state.submit_bodies.append(body)
            state.counters["submits"] += 1
        if (fault := await state.faults.apply("submit_response")) is not None:
            return fault
        return JSONResponse(to_json(video))

    async def retrieve(request: Request) -> Response:
        state.counters["status"] += 1
        if (fault := await state.faults.apply("status")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        video = state.videos.get(request.path_params["video_id"])
        if video is None:
            return not_found(request.path_params["video_id"])
        video.polls += 1
        body = to_json(video)
        headers = {}
        if body["status"] not in ("completed", "failed"):
            headers["openai-poll-after-ms"] = str(state.poll_after_ms)
        return JSONResponse(body, headers=headers)

    async def delete(request: Request) -> Response:
        state.counters["cancel"] += 1
        if (fault := await state.faults.apply("cancel")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        video_id = request.path_params["video_id"]
        with state.lock:
            video = state.videos.pop(video_id, None)
            if video is None:
                return not_found(video_id)
            video.deleted_at = time.monotonic()
            state.deleted[video_id] = video
        return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})

    async def content(request: Request) -> Response:
        state.counters["download"] += 1
        if (fault := await state.faults.apply("download")) is not None:
            return fault
        if (denied := unauthorised(request)) is not None:
            return denied
        video = state.videos.get(request.path_params["video_id"])
        if video is None:
            return not_found(request.path_params["video_id"])
        now = time.monotonic()
        if video.status(now) != "completed":
            return _error(404, "Video content is not available: the video is not completed.", None)
        if now > video.finishes + state.output_ttl_s:
            return _error(404, "Video content has expired.", None)
        if request.query_params.get("variant", "video") != "video":
            return _error(400, "This emulator serves only the video variant.", "invalid_value")
        video.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    return Starlette(
        routes=[
            Route("/v1/videos", create, methods=["POST"]),
            Route("/v1/videos/{video_id}", retrieve, methods=["GET"]),
            Route("/v1/videos/{video_id}", delete, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", content, methods=["GET"]),
        ]
    )
