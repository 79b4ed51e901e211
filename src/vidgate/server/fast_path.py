"""The API's hot requests, answered before FastAPI's routing: plain status polls and
submits. The routes stay the documented API (``/openapi.json``) and answer everything else
(long-polls, streams); both call the same functions, so an answer does not depend on which
path gave it (a test compares them byte for byte). What the fast path saves is the
framework's work per request: routing, dependency solving, request objects, middleware.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from vidgate.server.auth import authenticate, authenticate_secret, presented_key_raw
from vidgate.server.errors import ApiError, error_response, is_submit, unavailable
from vidgate.server.polls import SHAPES, PollAnswers, raw_json_headers
from vidgate.server.request_ids import HEADER, echoing
from vidgate.server.routes import SUBMIT_PATH, accept_submit
from vidgate.server.state import AppState
from vidgate.store.errors import StoreUnavailable

log = logging.getLogger("vidgate.server")


class FastPath:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.polls = PollAnswers(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, request_id: bytes) -> bool:
        """True if it answered (with ``request_id`` as its ``X-Request-ID``); False to let
        the app answer."""
        method, path = scope["method"], scope["path"]
        status: int = 200
        headers: list[tuple[bytes, bytes]] = []
        body: bytes | memoryview = b""
        response: Response | None = None
        try:
            if method == "GET" and path in SHAPES:
                params = self.polls.params(scope)
                if params is None:
                    return False
                key = await authenticate_secret(self.state, presented_key_raw(scope["headers"]))
                # The hot answer goes out as it is, without a response object.
                body, poll_headers = await self.polls.answer(scope, SHAPES[path], params, key)
                headers = raw_json_headers(body, poll_headers, request_id)
            elif method == "POST" and path == SUBMIT_PATH:
                request = Request(scope, receive)
                key = await authenticate(self.state, request.headers)
                response = await accept_submit(self.state, request, key)
            else:
                return False
        except ClientDisconnect:  # gone before its request was read: nobody to answer
            log.debug("http.client_gone method=%s path=%s", method, path)
            return True
        except ApiError as error:
            response = error_response(path, method, error)
        except StoreUnavailable as outage:
            retry_after_s = self.state.settings.server.unavailable_retry_after_s
            refusal = unavailable(outage, retry_after_s, submit=is_submit(path, method))
            response = error_response(path, method, refusal)
        except Exception:
            log.exception("http.request_failed method=%s path=%s", method, path)
            crash = ApiError(500, "internal error; the server log has the details")
            response = error_response(path, method, crash)
        if response is not None:
            if response.background is not None or not hasattr(response, "body"):
                await response(scope, receive, echoing(send, request_id))
                return True
            # What ``response(...)`` sends, with the request id, without its wrappers.
            status, body = response.status_code, response.body
            headers = [*response.raw_headers, (HEADER, request_id)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
