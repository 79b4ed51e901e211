"""The two status polls, the API's hot path: what they check and answer, in one place.

Both status routes are FastAPI routes (documented in ``/openapi.json``, and what long-polls
use). A plain poll is answered before FastAPI's routing (:mod:`vidgate.server.fast_path`)
by :class:`PollAnswers`, from the same functions, so both give the same status code,
headers and bytes (a test holds them to it). What both save:

* a run is one primary-key read of the columns its view needs (``store.poll_run``);
* the API key is cached for half a second (``store.authenticate``);
* the answer about a finished run never changes (until its video link is renewed), so
  it is kept, encoded, in :class:`FinishedAnswers`.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from vidgate import views
from vidgate.events.hub import RunChange, RunEvents
from vidgate.runs.status import Status
from vidgate.server.common import find_run
from vidgate.server.errors import ApiError
from vidgate.server.state import AppState
from vidgate.storage.base import url_expiry
from vidgate.store.records import KeyRecord, RunView

Shape = Literal["legacy", "unified"]
LEGACY_PATH = "/api/generate-video/status"
UNIFIED_PATH = "/api/video/status"
SHAPES: dict[str, Shape] = {LEGACY_PATH: "legacy", UNIFIED_PATH: "unified"}
WAIT_PARAM = "waitSeconds"
BASES = 64
PER_RUN = 4
"""Answers kept per finished run (two shapes, a base URL or two)."""


def legacy_params(run_id: str | None, model_slug: str | None, model: str | None) -> tuple[str, str]:
    slug = model_slug or model
    if not run_id:
        raise ApiError(400, "'runId' is required")
    if not slug:
        raise ApiError(400, "'modelSlug' is required (the model the run was submitted with)")
    return run_id, slug


def unified_params(request_id: str | None, run_id: str | None) -> str:
    chosen = request_id or run_id
    if not chosen:
        raise ApiError(400, "'requestId' (or 'runId') is required")
    return chosen


def json_response(body: bytes, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, media_type="application/json", headers=headers)


def raw_json_headers(
    body: bytes, headers: Mapping[str, str] | None, request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The header lines :func:`json_response` gives ``body`` (Starlette's order: the given
    ones, then length and type), with the request's ``X-Request-ID`` last, as
    :func:`~vidgate.server.request_ids.echoing` adds it."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    raw += [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id),
    ]
    return raw


async def status_answer(
    state: AppState,
    run: RunView,
    shape: Shape,
    base: str,
    headers: Mapping[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The status answer about ``run``: its body and headers (``headers`` first, as the
    routes add them)."""
    headers = dict(headers or {})
    if not run.status.is_terminal:
        headers["Retry-After"] = str(state.settings.server.status_retry_after_s)
    body = await views.status_body(
        state.store,
        state.storage,
        run,
        base=base,
        url_ttl_s=state.settings.storage.url_ttl_s,
        shape=shape,
    )
    return views.encode(body), headers


async def status_response(
    state: AppState,
    run: RunView,
    shape: Shape,
    base: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """:func:`status_answer` as a response."""
    body, headers = await status_answer(state, run, shape, base, headers)
    return json_response(body, headers)


class FinishedAnswers:
    """Encoded answers about finished runs, per run, shape and base URL; the least recently
    used runs are dropped beyond ``size``. A finished run does not change: an answer is kept
    until its video link would be renewed, or until any event of its run (so nothing may
    change a run without this cache hearing of it)."""

    def __init__(self, size: int, events: RunEvents) -> None:
        self.size = size
        self._runs: OrderedDict[str, dict[tuple[Shape, str], tuple[str, str, bytes, float]]]
        self._runs = OrderedDict()
        events.add_listener(self._on_change)

    def get(self, run_id: str, shape: Shape, base: str) -> tuple[str, str, bytes] | None:
        """``(api_key_id, model, body)`` of a kept answer."""
        answers = self._runs.get(run_id)
        found = answers.get((shape, base)) if answers is not None else None
        if found is None:
            return None
        if found[3] <= time.time():
            del answers[(shape, base)]  # type: ignore[union-attr]
            return None
        self._runs.move_to_end(run_id)
        return found[0], found[1], found[2]

    def put(self, run: RunView, shape: Shape, base: str, body: bytes, until: float) -> None:
        if self.size <= 0:
            return
        answers = self._runs.setdefault(run.id, {})
        if len(answers) >= PER_RUN:  # base URLs come from Host headers: keep a few
            del answers[next(iter(answers))]
        answers[(shape, base)] = (run.api_key_id, run.model, body, until)
        self._runs.move_to_end(run.id)
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)

    def _on_change(self, change: RunChange | None) -> None:
        if change is None:
            self._runs.clear()
        else:
            self._runs.pop(change.run_id, None)


class PollAnswers:
    """Plain status polls (no ``waitSeconds``), as the fast path answers them."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.finished = FinishedAnswers(state.settings.server.status_cache_runs, state.store.events)
        self._ttl_s = state.settings.storage.url_ttl_s
        self._public = state.settings.server.public_base_url
        self._bases: dict[tuple[object, ...], str] = {}

    @staticmethod
    def params(scope: Scope) -> dict[str, str] | None:
        """The query parameters of a plain poll, as Starlette reads them; None for a
        long-poll (the route holds it)."""
        params = query_params(scope["query_string"])
        return None if WAIT_PARAM in params else params

    async def answer(
        self, scope: Scope, shape: Shape, params: dict[str, str], key: KeyRecord
    ) -> tuple[bytes, dict[str, str] | None]:
        """The body and headers (None: no more than the JSON's own) of the answer."""
        if shape == "legacy":
            run_id, model = legacy_params(
                params.get("runId"), params.get("modelSlug"), params.get("model")
            )
        else:
            run_id, model = unified_params(params.get("requestId"), params.get("runId")), None
        base = self._public or self._base_url(scope)
        kept = self.finished.get(run_id, shape, base)
        if kept is not None and kept[0] == key.id and model in (None, kept[1]):
            return kept[2], None
        # Not kept, or not this key's run or model: find_run answers as it always does.
        run = await find_run(self.state, run_id, key, model)
        # Before the answer is made: should its link be renewed in between, the answer is
        # kept until a moment already past, i.e. not at all.
        until = self._keep_until(run)
        body, headers = await status_answer(self.state, run, shape, base)
        if run.status.is_terminal:
            self.finished.put(run, shape, base, body, until)
        return body, headers

    def _keep_until(self, run: RunView) -> float:
        if run.status is not Status.COMPLETED:
            return float("inf")
        expires = url_expiry(self._ttl_s, issued_from=run.completed_at)
        # The link is renewed every half TTL: keep the answer until just before that.
        return expires - self._ttl_s / 2 - 1

    def _base_url(self, scope: Scope) -> str:
        """The request's base URL, as Starlette makes it, remembered per scheme, host and
        root path (a few distinct ones in practice; at most :data:`BASES` are kept)."""
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        server = scope.get("server")
        key = (scope.get("scheme"), host, scope.get("root_path", ""), tuple(server or ()))
        base = self._bases.get(key)
        if base is None:
            if len(self._bases) >= BASES:
                self._bases.clear()
            base = self._bases[key] = str(Request(scope).base_url).rstrip("/")
        return base


_PLAIN_QUERY = re.compile(rb"[^%+;]*")


def query_params(query_string: bytes) -> dict[str, str]:
    """The query string's parameters as Starlette reads them (the last of a repeated name
    wins; a name without ``=`` is blank). A query with nothing to decode is split here,
    several times faster than ``parse_qsl``; any other goes through it."""
    if not _PLAIN_QUERY.fullmatch(query_string):
        return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    params = {}
    for pair in query_string.decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name] = value
    return params
