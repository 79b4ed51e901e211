"""The two error bodies of the API, one helper each, registered as exception handlers.

* Submit routes use the upstream submit envelope:
  ``{"error": {"message": "...", "type": "..."}, "status": N}``.
* Every other route uses the upstream ``Error`` schema: ``{"error": N, "message": "..."}``.

While the database is unavailable every route that needs it answers ``503`` with
``Retry-After``, in its own shape (:func:`unavailable`).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vidgate.store.errors import StoreUnavailable

SUBMIT_PATHS = frozenset({"/api/generate-video"})

DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "INSUFFICIENT_BALANCE",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    410: "gone_error",
    429: "RATE_LIMITED",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered to the client with a message a person can act on."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or DEFAULT_TYPES.get(status, "error")
        self.headers = dict(headers or {})


def submit_error_body(status: int, message: str, type: str) -> dict[str, object]:
    return {"error": {"message": message, "type": type}, "status": status}


def status_error_body(status: int, message: str) -> dict[str, object]:
    return {"error": status, "message": message}


def error_response(path: str, method: str, error: ApiError) -> JSONResponse:
    """The error answer to a request of ``method`` on ``path``."""
    if is_submit(path, method):
        body = submit_error_body(error.status, error.message, error.type)
    else:
        body = status_error_body(error.status, error.message)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def unavailable(outage: StoreUnavailable, retry_after_s: int, *, submit: bool) -> ApiError:
    """The answer to a request that needed the database while it is unavailable. A submit
    may have been stored all the same (a commit whose answer was lost with the connection),
    so its message says how to send it again without making it twice."""
    message = f"{outage}; retry in {retry_after_s} s"
    if submit:
        message += " with the same Idempotency-Key header, so that the run is not made twice"
    return ApiError(503, message, headers={"Retry-After": str(retry_after_s)})


def is_submit(path: str, method: str) -> bool:
    return path in SUBMIT_PATHS and method == "POST"


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
        if err.get("type") == "missing":
            problems.append(f"'{where}' is required")
        else:
            problems.append(f"'{where}': {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def install(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(request.url.path, request.method, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            request.url.path, request.method, ApiError(400, _validation_message(exc))
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        messages = {
            404: f"no route {request.url.path}; see /docs for the API",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(
            request.url.path,
            request.method,
            ApiError(exc.status_code, message, headers=dict(exc.headers or {})),
        )

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreUnavailable)
        retry_after_s = request.app.state.vidgate.settings.server.unavailable_retry_after_s
        path, method = request.url.path, request.method
        error = unavailable(exc, retry_after_s, submit=is_submit(path, method))
        return error_response(path, method, error)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client left before its request was read: what is sent goes nowhere, and
        # this is no error of the server's (it would be logged as one otherwise).
        return Response(status_code=400)

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return error_response(
            request.url.path,
            request.method,
            ApiError(500, "internal error; the server log has the details"),
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreUnavailable, on_unavailable)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_crash)
