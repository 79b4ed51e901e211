"""Known open NanoGPT clients, each as a Python function that reads vidgate's real HTTP
answers exactly the way that client reads upstream's: which id it takes from the submit
answer, where it reads the status and in which case, where it finds the video URL and
whether it resolves a relative one, and which statuses end its polling loop.

Each ends on completed, failed and cancelled runs on both status routes, except where a
client's terminal set cannot hold a route's documented spelling of a cancelled run: an app
that ends on ``CANCELED`` only (as upstream spells it on ``/api/video/status``) would poll a
cancelled run on the legacy route (``CANCELLED``, as its page spells it) for ever, against
upstream as against vidgate; so would one that ends on ``CANCELLED`` only on the unified
route. Those pairs are left out, not faked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.api_helpers import SMALL, decode_mp4, submit, wait_terminal
from tests.servers import LiveServer

MODEL = "testcard-video"
ROUTES = {"unified": "CANCELED", "legacy": "CANCELLED"}
"""Each status route and its nested spelling of a cancelled run."""
POLLS = 300  # x 0.1 s: a client that has not ended by then never would


@dataclass(frozen=True)
class Ended:
    outcome: str  # completed, failed or cancelled, as the client concludes
    url: str | None = None
    error: str | None = None


Poll = Callable[[str], dict[str, Any]]
"""GET the run's status by its id; the body."""


def _loop(poll: Poll, run_id: str, read: Callable[[dict[str, Any]], Ended | None]) -> Ended:
    for _ in range(POLLS):
        ended = read(poll(run_id))
        if ended is not None:
            return ended
        time.sleep(0.1)
    raise AssertionError(f"the client is still polling run {run_id}")


def kairo(answer: dict[str, Any], poll: Poll, origin: str) -> Ended:
    """``runId ?? id``; ``data.status`` upper-cased; ``data.output.video.url`` (a relative
    one resolved against the API's origin); ends on COMPLETED, FAILED and CANCELED."""
    run_id = answer.get("runId") or answer["id"]

    def read(body: dict[str, Any]) -> Ended | None:
        data = body.get("data") or {}
        status = str(data.get("status") or body.get("status") or "").upper()
        if status == "COMPLETED":
            url = ((data.get("output") or {}).get("video") or {}).get("url")
            return Ended("completed", urljoin(origin, url) if url else None)
        if status == "FAILED":
            return Ended("failed", error=data.get("error"))
        if status == "CANCELED":
            return Ended("cancelled")
        return None

    return _loop(poll, run_id, read)


def nanoodle(answer: dict[str, Any], poll: Poll, origin: str) -> Ended:
    """``runId || id``; ``(data?.status || status).toUpperCase()``; ends on
    COMPLETED/SUCCEEDED and FAILED/ERROR/CANCELED; the URL as given."""
    run_id = answer.get("runId") or answer["id"]

    def read(body: dict[str, Any]) -> Ended | None:
        data = body.get("data") or {}
        status = str(data.get("status") or body.get("status")).upper()
        if status in ("COMPLETED", "SUCCEEDED"):
            url = ((data.get("output") or {}).get("video") or {}).get("url") or body.get("videoUrl")
            return Ended("completed", url)
        if status in ("FAILED", "ERROR"):
            return Ended("failed", error=data.get("error") or body.get("error"))
        if status == "CANCELED":
            return Ended("cancelled")
        return None

    return _loop(poll, run_id, read)


def nanochat(answer: dict[str, Any], poll: Poll, origin: str) -> Ended:
    """``runId``; the legacy page's ``data.status`` as sent; ``data.output.video.url`` or
    ``videoUrl``, prefixed with the origin when it starts with ``/``; ends on COMPLETED,
    FAILED and CANCELLED."""
    run_id = answer["runId"]

    def read(body: dict[str, Any]) -> Ended | None:
        data = body.get("data") or {}
        status = data.get("status")
        if status == "COMPLETED":
            url = ((data.get("output") or {}).get("video") or {}).get("url") or body.get("videoUrl")
            return Ended("completed", origin + url if url and url.startswith("/") else url)
        if status == "FAILED":
            return Ended("failed", error=data.get("error"))
        if status == "CANCELLED":
            return Ended("cancelled")
        return None

    return _loop(poll, run_id, read)


def seerai(answer: dict[str, Any], poll: Poll, origin: str) -> Ended:
    """``runId ?? id``; the top-level lower-case ``status`` where there is one, else the
    nested one lower-cased; ``videoUrl``, else ``data.output.video.url``; ends on completed,
    failed and cancelled/canceled; reads ``userFriendlyError`` first."""
    run_id = answer.get("runId") or answer["id"]

    def read(body: dict[str, Any]) -> Ended | None:
        data = body.get("data") or {}
        status = str(body.get("status") or data.get("status") or "").lower()
        if status == "completed":
            url = body.get("videoUrl") or ((data.get("output") or {}).get("video") or {}).get("url")
            return Ended("completed", url)
        if status == "failed":
            error = body.get("userFriendlyError") or data.get("userFriendlyError")
            return Ended("failed", error=error or body.get("error") or data.get("error"))
        if status in ("cancelled", "canceled"):
            return Ended("cancelled")
        return None

    return _loop(poll, run_id, read)


CLIENTS = {"kairo": kairo, "nanoodle": nanoodle, "nanochat": nanochat, "seerai": seerai}
CANCEL_SPELLINGS = {
    "kairo": {"CANCELED"},
    "nanoodle": {"CANCELED"},
    "nanochat": {"CANCELLED"},
    "seerai": {"CANCELED", "CANCELLED"},  # it lower-cases whatever it is sent
}


def poller(server: LiveServer, route: str) -> Poll:
    def poll(run_id: str) -> dict[str, Any]:
        if route == "unified":
            url, params = "/api/video/status", {"requestId": run_id}
        else:
            url, params = "/api/generate-video/status", {"runId": run_id, "modelSlug": MODEL}
        response = httpx.get(
            server.base_url + url, params=params, headers=server.headers(), timeout=10
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return poll


@pytest.fixture(scope="module")
def answers(live_server: LiveServer) -> Iterator[dict[str, dict[str, Any]]]:
    """The submit answers of one run of each outcome, all terminal."""
    bodies = {
        "completed": {"prompt": "a client reads this"},
        "failed": {"prompt": "sandbox:fail a client reads this"},
        "cancelled": {"prompt": "sandbox:queue=30 a client cancels this"},
    }
    found = {}
    for outcome, body in bodies.items():
        response = submit(live_server, {"model": MODEL, **SMALL, **body})
        assert response.status_code == 202, response.text
        found[outcome] = response.json()
    cancel = httpx.post(
        f"{live_server.base_url}/api/generate-video/cancel",
        json={"runId": found["cancelled"]["runId"]},
        headers=live_server.headers(),
        timeout=10,
    )
    assert cancel.status_code == 200, cancel.text
    for answer in found.values():
        wait_terminal(live_server, answer["runId"])
    yield found


CASES = [
    (client, route, outcome)
    for client in CLIENTS
    for route in ROUTES
    for outcome in ("completed", "failed", "cancelled")
    if outcome != "cancelled" or ROUTES[route] in CANCEL_SPELLINGS[client]
]


@pytest.mark.parametrize(("client", "route", "outcome"), CASES)
def test_each_client_ends_as_the_run_did(
    live_server: LiveServer,
    answers: dict[str, dict[str, Any]],
    client: str,
    route: str,
    outcome: str,
) -> None:
    ended = CLIENTS[client](answers[outcome], poller(live_server, route), live_server.base_url)
    assert ended.outcome == outcome
    if outcome == "completed":
        assert ended.url is not None
        video = httpx.get(ended.url, timeout=10, follow_redirects=True)  # no key: signed
        assert video.status_code == 200
        assert decode_mp4(video.content).frames > 0
    if outcome == "failed":
        assert ended.error


def test_a_cancelled_run_ends_for_either_spelling_on_its_route(
    live_server: LiveServer, answers: dict[str, dict[str, Any]]
) -> None:
    """Done when: a client checking ``CANCELED`` on the unified route and one checking
    ``CANCELLED`` on the legacy route both end; the flat status is ``cancelled``."""
    answer = answers["cancelled"]
    assert kairo(answer, poller(live_server, "unified"), "").outcome == "cancelled"
    assert nanochat(answer, poller(live_server, "legacy"), "").outcome == "cancelled"
    unified = poller(live_server, "unified")(answer["runId"])
    legacy = poller(live_server, "legacy")(answer["runId"])
    assert (unified["status"], unified["data"]["status"]) == ("cancelled", "CANCELED")
    assert legacy["data"]["status"] == "CANCELLED"
