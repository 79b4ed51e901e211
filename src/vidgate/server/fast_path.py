"""The API's hot requests, answered before FastAPI's routing: plain status polls and
submits. The routes stay the documented API (``/openapi.json``) and answer everything else
(long-polls, streams); both call the same functions, so an answer does not depend on which
path gave it (a test compares them byte for byte). What the fast path saves is the
framework's work per request: routing, dependency solving, request objects, middleware.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from vidgate.server.auth import authenticate
from vidgate.server.errors import ApiError, error_response, is_submit, unavailable
from vidgate.server.polls import SHAPES, PollAnswers
from vidgate.server.routes import SUBMIT_PATH, accept_submit
from vidgate.server.state import AppState
from vidgate.store.errors import StoreUnavailable

log = logging.getLogger("vidgate.server")


class FastPath:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.polls = PollAnswers(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """True if it answered; False to let the app answer."""
        method, path = scope["method"], scope["path"]
        try:
            if method == "GET" and path in SHAPES:
                params = self.polls.params(scope)
                if params is None:
                    return False
                key = await authenticate(self.state, Headers(scope=scope))
                response = await self.polls.answer(scope, SHAPES[path], params, key)
            elif method == "POST" and path == SUBMIT_PATH:
                request = Request(scope, receive)
                key = await authenticate(self.state, request.headers)
                response = await accept_submit(self.state, request, key)
            else:
                return False
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
        await response(scope, receive, send)
        return True
