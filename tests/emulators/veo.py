"""An emulator of Google Veo on the Gemini API (``generativelanguage.googleapis.com``).

It follows the documented REST surface the ``google-genai`` SDK drives in Gemini Developer
API mode:

* ``POST /v1beta/models/{model}:predictLongRunning`` with ``{"instances": [{"prompt",
  "image"?}], "parameters": {...}}`` answers a long-running operation
  ``{"name": "models/{model}/operations/{id}"}``;
* ``GET /v1beta/models/{model}/operations/{id}`` answers the operation. ``done`` is left out
  while it runs (proto3 JSON omits ``false``); when it ends it carries either ``error`` (a
  ``google.rpc.Status``) or ``response.generateVideoResponse`` with ``generatedSamples[].video.uri``
  and, when the safety filters removed videos, ``raiMediaFilteredCount`` and
  ``raiMediaFilteredReasons``;
* ``GET /v1beta/files/{id}:download?alt=media`` serves a video; like the real API it needs the
  key, and it is ``404`` once ``output_ttl_s`` has passed (the real API keeps files two days);
* ``POST /v1beta/models/{model}/operations/{id}:cancel`` is the generic ``operations.cancel``.
  The Gemini API does not document it for Veo, and the generic method answers
  ``UNIMPLEMENTED`` (HTTP 501) where a service does not support it: that is the default here.
  With ``cancel_supported`` on it behaves as the LRO docs describe a successful cancel: the
  operation ends ``done`` with ``error.code == 1`` (``CANCELLED``).

Auth is ``x-goog-api-key`` (or ``?key=``): missing → ``403 PERMISSION_DENIED``, wrong →
``400 INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``, as the real service answers.

Scripted outcomes, by prompt: the word ``forbidden`` ends the operation with no samples and a
RAI filter count and reasons; ``explode`` ends it with an ``error``. Anything else succeeds
with ``sampleCount`` videos. Time drives the state: an operation is running for
``queue_s + run_s`` seconds after submit and is done afterwards (Veo exposes no queue state or
progress). No task runs per operation, so thousands of operations cost only a dict entry.

Fault operations: ``submit`` (before the operation exists), ``submit_response`` (after it was
created: the answer is lost), ``status``, ``cancel``, ``download``.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.harness import Faults
from tests.emulators.media import sample_mp4

API_VERSION = "v1beta"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
KNOWN_PARAMETERS = frozenset(
    {
        "aspectRatio",
        "durationSeconds",
        "negativePrompt",
        "personGeneration",
        "resolution",
        "sampleCount",
        "enhancePrompt",
    }
)
ASPECT_RATIOS = frozenset({"16:9", "9:16"})
RAI_REASON = (
    "The prompt could not be submitted: it may violate our usage guidelines. Try rephrasing it."
)


@dataclass
class VeoOperation:
    op_id: str
    model: str
    prompt: str
    sample_count: int
    created: float
    cancelled_at: float | None = None
    polls: int = 0
    downloads: int = 0


def google_error(code: int, status: str, message: str, **extra: Any) -> JSONResponse:
    """The error envelope Google APIs answer with."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status, **extra}
    return JSONResponse({"error": error}, status_code=code)


class VeoEmulator:
    """Holds the state (operations, counters, knobs) and the Starlette ``app``."""

    def __init__(
        self,
        *,
        api_key: str = "veo-test-key",
        queue_s: float = 0.3,
        run_s: float = 0.5,
        output_ttl_s: float = 120.0,
        cancel_supported: bool = False,
    ) -> None:
        self.api_key = api_key
        self.queue_s = queue_s
        self.run_s = run_s
        self.output_ttl_s = output_ttl_s
        self.cancel_supported = cancel_supported
        self.faults = Faults()
        self.operations: dict[str, VeoOperation] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.submit_bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._defaults = (api_key, queue_s, run_s, output_ttl_s, cancel_supported)
        self.app = Starlette(
            routes=[
                Route(
                    f"/{API_VERSION}/models/{{rest:path}}", self._models, methods=["GET", "POST"]
                ),
                Route(f"/{API_VERSION}/files/{{name}}", self._download, methods=["GET"]),
            ]
        )

    @property
    def submits(self) -> int:
        """How many submit requests created an operation."""
        return len(self.submit_bodies)

    def reset(self) -> None:
        """Forget every operation, counter, fault and knob change."""
        with self._lock:
            self.operations.clear()
            self.submit_bodies.clear()
            self.requests.clear()
        self.faults.clear()
        (self.api_key, self.queue_s, self.run_s, self.output_ttl_s, self.cancel_supported) = (
            self._defaults
        )

    # -- routing -----------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        rest: str = request.path_params["rest"]
        parts = rest.split("/")
        if request.method == "POST" and len(parts) == 1 and rest.endswith(":predictLongRunning"):
            return await self._submit(request, rest.removesuffix(":predictLongRunning"))
        if len(parts) == 3 and parts[1] == "operations":
            model, op_part = parts[0], parts[2]
            if request.method == "GET" and ":" not in op_part:
                return await self._status(request, model, op_part)
            if request.method == "POST" and op_part.endswith(":cancel"):
                return await self._cancel(request, model, op_part.removesuffix(":cancel"))
        return google_error(404, "NOT_FOUND", "Method not found.")

    def _auth(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.api_key:
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        return None

    # -- operations --------------------------------------------------------------------------

    async def _submit(self, request: Request, model: str) -> Response:
        self.requests["submit"] += 1
        if (fault := await self.faults.apply("submit")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        problem = _validate(body)
        if problem:
            return google_error(400, "INVALID_ARGUMENT", problem)
        instance = body["instances"][0]
        parameters = body.get("parameters") or {}
        op = VeoOperation(
            op_id=secrets.token_hex(6),
            model=model,
            prompt=str(instance.get("prompt") or ""),
            sample_count=int(parameters.get("sampleCount") or 1),
            created=time.monotonic(),
        )
        with self._lock:
            self.operations[op.op_id] = op
            self.submit_bodies.append(body)
        if (fault := await self.faults.apply("submit_response")) is not None:
            return fault
        return JSONResponse({"name": f"models/{model}/operations/{op.op_id}"})

    async def _status(self, request: Request, model: str, op_id: str) -> Response:
        self.requests["status"] += 1
        if (fault := await self.faults.apply("status")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        op = self.operations.get(op_id)
        if op is None or op.model != model:
            return google_error(404, "NOT_FOUND", f"Operation {op_id} not found.")
        op.polls += 1
        return JSONResponse(self._operation_json(op, str(request.base_url)))

    async def _cancel(self, request: Request, model: str, op_id: str) -> Response:
        self.requests["cancel"] += 1
        if (fault := await self.faults.apply("cancel")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        op = self.operations.get(op_id)
        if op is None or op.model != model:
            return google_error(404, "NOT_FOUND", f"Operation {op_id} not found.")
        if not self.cancel_supported:
            return google_error(501, "UNIMPLEMENTED", "Operation cancellation is not supported.")
        if not self._finished(op) and op.cancelled_at is None:
            op.cancelled_at = time.monotonic()
        return JSONResponse({})

    async def _download(self, request: Request) -> Response:
        self.requests["download"] += 1
        if (fault := await self.faults.apply("download")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        name: str = request.path_params["name"]
        file_id, _, action = name.partition(":")
        op_id, _, index = file_id.partition("v")
        op = self.operations.get(op_id)
        if (
            action != "download"
            or request.query_params.get("alt") != "media"
            or op is None
            or not index.isdigit()
            or int(index) >= op.sample_count
            or self._outcome(op) != "success"
            or time.monotonic() > self._ends_at(op) + self.output_ttl_s
        ):
            return google_error(404, "NOT_FOUND", f"File {file_id} not found.")
        op.downloads += 1
        return Response(sample_mp4(), media_type="video/mp4")

    # -- the clock ---------------------------------------------------------------------------

    def _ends_at(self, op: VeoOperation) -> float:
        return op.created + self.queue_s + self.run_s

    def _finished(self, op: VeoOperation) -> bool:
        return time.monotonic() >= self._ends_at(op)

    def _outcome(self, op: VeoOperation) -> str | None:
        """``None`` while running, else ``cancelled``, ``filtered``, ``error`` or ``success``."""
        if op.cancelled_at is not None:
            return "cancelled"
        if not self._finished(op):
            return None
        words = op.prompt.lower()
        if "forbidden" in words:
            return "filtered"
        if "explode" in words:
            return "error"
        return "success"

    def _operation_json(self, op: VeoOperation, base_url: str) -> dict[str, Any]:
        name = f"models/{op.model}/operations/{op.op_id}"
        outcome = self._outcome(op)
        if outcome is None:
            return {"name": name}
        if outcome == "cancelled":
            return {"name": name, "done": True, "error": {"code": 1, "message": "CANCELLED"}}
        if outcome == "error":
            return {
                "name": name,
                "done": True,
                "error": {"code": 13, "message": "Video generation failed: internal error."},
            }
        result: dict[str, Any]
        if outcome == "filtered":
            result = {
                "raiMediaFilteredCount": op.sample_count,
                "raiMediaFilteredReasons": [RAI_REASON],
            }
        else:
            root = base_url.rstrip("/")
            result = {
                "generatedSamples": [
                    {
                        "video": {
                            "uri": f"{root}/{API_VERSION}/files/{op.op_id}v{i}:download?alt=media"
                        }
                    }
                    for i in range(op.sample_count)
                ]
            }
        return {
            "name": name,
            "done": True,
            "response": {"@type": RESPONSE_TYPE, "generateVideoResponse": result},
        }


def _validate(body: object) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance."
    instance = instances[0]
    if not instance.get("prompt") and not instance.get("image"):
        return "A prompt or an image is required."
    image = instance.get("image")
    if image is not None and (
        not isinstance(image, dict)
        or not image.get("bytesBase64Encoded")
        or not image.get("mimeType")
    ):
        return "image needs bytesBase64Encoded and mimeType."
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return "parameters must be an object."
    for key in parameters:
        if key not in KNOWN_PARAMETERS:
            return (
                f"`{key}` isn't supported by this model. Please remove it or refer to the "
                "Gemini API documentation for supported usage."
            )
    ratio = parameters.get("aspectRatio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        return f"Aspect ratio {ratio} is not supported; use 16:9 or 9:16."
    count = parameters.get("sampleCount", 1)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return "sampleCount must be between 1 and 4."
    duration = parameters.get("durationSeconds")
    if duration is not None and (not isinstance(duration, int) or not 4 <= duration <= 8):
        return "durationSeconds must be an integer between 4 and 8."
    return None
